"""What "auto" hyper-parameters resolve to for one method: its rule, and the schedule names it uses."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Scheduler = Literal["linear", "cosine", "constant"]
Preset = Literal["quality", "fast"]


@dataclass(frozen=True)
class AutoRule:
    """What "auto" resolves to for one method (declared in its StrategySpec); `source` names where
    the numbers come from (a paper, the PEFT docs, or bench/peft.py's grid).

    Epochs follow the data size: enough epochs for about `target_steps` optimizer steps, between
    `min_epochs` and `max_epochs` — small files need many passes (parameter-efficient methods most),
    large ones few. The "fast" preset caps epochs at `min_epochs` (the quality/time trade-off is
    measured in bench/peft.py).
    """

    learning_rate: float
    max_epochs: int = 3
    min_epochs: int = 3
    target_steps: int = 500
    warmup_ratio: float = 0.06
    lr_scheduler: Scheduler = "linear"
    # pooling "auto": "sentence" = the base's own sentence-embedding pooling where it declares mean pooling
    # (app.training.pooling), "cls" = the architecture's [CLS] pooler
    pooling: Literal["cls", "sentence"] = "cls"
    source: str = "BERT's fine-tuning recipe (Devlin et al. 2019): 3 epochs, linear decay, 6% warm-up"

    def for_size(self, n_train: int | None) -> AutoRule:
        """The rule for a training file of `n_train` examples: this one, unless a rule switches recipe on
        small data (app.training.stability.recipe.FewShotSwitch)."""
        return self

    def batch_size(self, n_train: int) -> int:
        """n_train // 50 clamped to [4, 32]: about 50 steps per epoch on small files."""
        return max(4, min(32, n_train // 50))

    def n_epochs(self, n_train: int, batch_size: int, preset: Preset = "quality") -> int:
        if preset == "fast":
            return self.min_epochs
        steps_per_epoch = math.ceil(n_train / batch_size)
        return max(self.min_epochs, min(self.max_epochs, math.ceil(self.target_steps / steps_per_epoch)))

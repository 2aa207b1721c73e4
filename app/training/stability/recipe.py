"""The Mosbach et al. 2021 recipe ("On the Stability of Fine-tuning BERT: Misconceptions, Explanations,
and Strong Baselines") as an auto rule: what "auto" resolves to when `stability.recipe` is "mosbach".

Their baseline: bias-corrected Adam (torch's AdamW always corrects; BERT's original BERTAdam did not),
a small learning rate (2e-5 for BERT, against Devlin et al.'s 5e-5), linear warm-up over the first
10% of steps then linear decay, and many more iterations: 20 epochs on the small GLUE sets (RTE 2.5k,
MRPC 3.7k, CoLA 8.6k examples). Other methods keep their own rate scaled by the same 2e-5/5e-5.

`recipe: "auto"` (the default) uses it for full fine-tuning on fewer than FEW_SHOT examples, where the
method's own short schedule leaves a new head barely trained: bench/fewshot.py, 32 election tweets
(repeat 0), supervised "auto" (5 epochs at 5e-5, 40 steps) 68.5% test accuracy, the recipe (20 epochs
at 2e-5, 160 steps) 80.9%. Parameter-efficient methods keep their own rules there (already 10 epochs at
their higher rates; the recipe is unmeasured for them), as does every method from FEW_SHOT examples up.
"""
from __future__ import annotations

from dataclasses import dataclass

from app.training.auto_rule import AutoRule, Preset

LEARNING_RATE_SCALE = 2e-5 / 5e-5  # Mosbach et al.'s rate over BERT's (Devlin et al. 2019)
WARMUP_RATIO = 0.1
SMALL_DATA = 10_000  # examples: below this, the "small" GLUE sets of the paper
SMALL_DATA_EPOCHS = 20
FEW_SHOT = 500  # examples: below this, recipe "auto" is the recipe for full fine-tuning


@dataclass(frozen=True)
class MosbachRule(AutoRule):
    """The method's rule with Mosbach et al.'s rate, warm-up and epochs (20 on small data; larger files
    keep the method's epochs). The "fast" preset still caps epochs at the rule's minimum."""

    def n_epochs(self, n_train: int, batch_size: int, preset: Preset = "quality") -> int:
        if preset == "quality" and n_train < SMALL_DATA:
            return SMALL_DATA_EPOCHS
        return super().n_epochs(n_train, batch_size, preset)


def mosbach_rule(rule: AutoRule) -> MosbachRule:
    """`rule` (a method's own) turned into the recipe's, naming both sources."""
    return MosbachRule(**{**vars(rule), "learning_rate": rule.learning_rate * LEARNING_RATE_SCALE,
                          "warmup_ratio": WARMUP_RATIO, "lr_scheduler": "linear",
                          "source": (f"Mosbach et al. 2021 recipe: {LEARNING_RATE_SCALE:g}× the method's learning "
                                     f"rate ({rule.learning_rate:g}), 10% warm-up, linear decay, "
                                     f"{SMALL_DATA_EPOCHS} epochs under {SMALL_DATA:,} examples; the method's rule: "
                                     f"{rule.source}")})


@dataclass(frozen=True)
class FewShotSwitch(AutoRule):
    """recipe "auto": the method's rule (`small` below FEW_SHOT examples: the recipe's)."""

    small: AutoRule | None = None
    large: AutoRule | None = None

    def for_size(self, n_train: int | None) -> AutoRule:
        return self.small if n_train is not None and n_train < FEW_SHOT else self.large


def few_shot_switch(rule: AutoRule) -> FewShotSwitch:
    """`rule` from FEW_SHOT examples up, Mosbach et al.'s recipe below; its source names both."""
    small = mosbach_rule(rule)
    return FewShotSwitch(**{**vars(rule), "source": f"under {FEW_SHOT} examples: {small.source}. From {FEW_SHOT} up: "
                                                    f"{rule.source}"}, small=small, large=rule)

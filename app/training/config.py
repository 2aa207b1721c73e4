"""Settings every strategy shares, validated by the API without importing torch."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from app.training.masking.settings import MaskingSettings

Auto = Literal["auto"]


@dataclass(frozen=True)
class AutoRule:
    """What "auto" resolves to for one method (declared in its StrategySpec); `source` names where
    the numbers come from (a paper, the PEFT docs, or a grid in bench/)."""

    learning_rate: float
    n_epochs: int = 3
    source: str = "BERT's fine-tuning recipe (Devlin et al. 2019): 3 epochs"

    def batch_size(self, n_train: int) -> int:
        """n_train // 50 clamped to [4, 32]: about 50 steps per epoch on small files."""
        return max(4, min(32, n_train // 50))


@dataclass
class Hyperparameters:
    """Resolved hyper-parameters ("auto" already replaced by concrete values)."""

    n_epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    max_length: int = 128
    warmup_ratio: float = 0.06
    weight_decay: float = 0.0
    checkpoint_every: int | None = None  # optimizer steps; None = once per epoch
    eval_every: int | None = None  # optimizer steps; None = once per epoch


# validation context key: the input is a stored, already resolved method (see app.training.methods)
RESOLVED = "resolved"

# field -> (low, high, low bound inclusive); every upper bound is inclusive
_RANGES: dict[str, tuple[float, float, bool]] = {
    "n_epochs": (1, 50, True),
    "batch_size": (1, 1024, True),
    "learning_rate": (0.0, 1.0, False),
    "learning_rate_multiplier": (0.0, 100.0, False),
}


class HyperparameterSettings(BaseModel):
    """OpenAI's hyper-parameters (each may be "auto") plus the knobs a demanding user expects."""

    model_config = ConfigDict(extra="forbid")

    n_epochs: int | Auto = Field("auto", description="Passes over the training file (1-50); auto = 3.")
    batch_size: int | Auto = Field("auto", description="Examples per optimizer step (1-1024); auto scales with data.")
    learning_rate: float | Auto = Field("auto", description="Peak learning rate in (0, 1]; auto = the method's default.")
    learning_rate_multiplier: float | Auto = Field(
        "auto", description="OpenAI's knob: a multiple (0, 100] of the method's default learning rate."
    )
    max_length: int = Field(128, ge=8, le=2048, description="Tokens per example after truncation.")
    warmup_ratio: float = Field(0.06, ge=0, le=0.5, description="Fraction of steps with linear warmup.")
    weight_decay: float = Field(0.0, ge=0, le=1, description="AdamW decoupled weight decay.")
    checkpoint_every: int | None = Field(None, ge=1, description="Optimizer steps between checkpoints; default once per epoch.")
    eval_every: int | None = Field(None, ge=1, description="Optimizer steps between evaluations; default once per epoch.")

    @field_validator("n_epochs", "batch_size", "learning_rate", "learning_rate_multiplier")
    @classmethod
    def _in_range(cls, value: int | float | str, info: ValidationInfo) -> int | float | str:
        # Field(ge=...) cannot constrain an int|"auto" union, so the ranges live here (per field,
        # so the error's `loc` names the offending field)
        if value == "auto":
            return value
        low, high, closed = _RANGES[info.field_name]
        if not math.isfinite(value) or not (low <= value if closed else low < value) or value > high:
            interval = f"{'[' if closed else '('}{low:g}, {high:g}]"
            raise ValueError(f"{info.field_name} must be 'auto' or within {interval}, got {value}")
        return value

    @model_validator(mode="after")
    def _one_learning_rate(self, info: ValidationInfo) -> HyperparameterSettings:
        # a stored (resolved) method shows both: the rate and the multiplier it came from
        resolved = bool(info.context and info.context.get(RESOLVED))
        if self.learning_rate != "auto" and self.learning_rate_multiplier != "auto" and not resolved:
            raise ValueError("give learning_rate or learning_rate_multiplier, not both")
        return self

    def resolve(self, n_train: int | None, rule: AutoRule, seed: int) -> Hyperparameters:
        """Replace every "auto" with a concrete value for a training file of `n_train` examples.

        auto follows the method's `rule`: its epochs, its batch size for the data size, its learning
        rate × learning_rate_multiplier (auto = 1). A batch never exceeds the training file.
        `n_train` may be None only when nothing is "auto" (a method resolved at submission).
        """
        if n_train is None and "auto" in (self.n_epochs, self.batch_size, self.learning_rate):
            raise ValueError("n_train is needed to resolve 'auto' hyper-parameters")
        batch = self.batch_size if self.batch_size != "auto" else rule.batch_size(n_train)
        multiplier = 1.0 if self.learning_rate_multiplier == "auto" else self.learning_rate_multiplier
        lr = self.learning_rate if self.learning_rate != "auto" else rule.learning_rate * multiplier
        return Hyperparameters(
            n_epochs=rule.n_epochs if self.n_epochs == "auto" else self.n_epochs,
            batch_size=max(1, batch if n_train is None else min(batch, n_train)),
            learning_rate=float(lr),
            seed=seed,
            max_length=self.max_length,
            warmup_ratio=self.warmup_ratio,
            weight_decay=self.weight_decay,
            checkpoint_every=self.checkpoint_every,
            eval_every=self.eval_every,
        )


class MethodSettings(BaseModel):
    """Base of every strategy's `method.<type>` object."""

    model_config = ConfigDict(extra="forbid")

    hyperparameters: HyperparameterSettings = Field(
        default_factory=HyperparameterSettings, description="Training schedule; see HyperparameterSettings."
    )

    @classmethod
    def file_fields(cls) -> tuple[str, ...]:
        """Settings fields that name further uploaded files; the API checks each is the tenant's and
        readable, and the worker hands their paths to the strategy as `ctx.input_files`."""
        return ()


class TaskMethodSettings(MethodSettings):
    """Base of the methods that fine-tune on the labelled task (supervised, lora, bitfit, …)."""

    aux_mlm_weight: float = Field(0.0, ge=0, le=10, description=(
        "λ of an auxiliary masked-LM loss on the same batches' texts (Chronopoulou et al. 2019): "
        "loss = task + λ·MLM; 0 turns it off."))
    aux_mlm: MaskingSettings | None = Field(None, description=(
        "Masking of the auxiliary MLM loss (default: BERT's 15%, 80/10/10, token unit)."))

    @model_validator(mode="after")
    def _aux_needs_weight(self) -> TaskMethodSettings:
        if self.aux_mlm is not None and self.aux_mlm_weight == 0:
            raise ValueError("aux_mlm is set but aux_mlm_weight is 0; give aux_mlm_weight > 0 to use it")
        return self

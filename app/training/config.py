"""Settings every strategy shares, validated by the API without importing torch."""
from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from app.training.base import Hyperparameters
from app.training.masking.settings import MaskingSettings

Auto = Literal["auto"]

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
    def _one_learning_rate(self) -> HyperparameterSettings:
        if self.learning_rate != "auto" and self.learning_rate_multiplier != "auto":
            raise ValueError("give learning_rate or learning_rate_multiplier, not both")
        return self

    def resolve(self, n_train: int, default_lr: float, seed: int) -> Hyperparameters:
        """Replace every "auto" with a concrete value for a training file of `n_train` examples.

        auto: 3 epochs; batch size n_train // 50 clamped to [4, 32]; learning rate = the method's
        default × learning_rate_multiplier (auto = 1). A batch never exceeds the training file.
        """
        batch = self.batch_size if self.batch_size != "auto" else max(4, min(32, n_train // 50))
        multiplier = 1.0 if self.learning_rate_multiplier == "auto" else self.learning_rate_multiplier
        lr = self.learning_rate if self.learning_rate != "auto" else default_lr * multiplier
        return Hyperparameters(
            n_epochs=3 if self.n_epochs == "auto" else self.n_epochs,
            batch_size=max(1, min(batch, n_train)),
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

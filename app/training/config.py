"""Settings every strategy shares, validated by the API without importing torch."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.training.base import Hyperparameters

Auto = Literal["auto"]


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

    @model_validator(mode="after")
    def _ranges(self) -> HyperparameterSettings:
        checks = [
            ("n_epochs", self.n_epochs, 1, 50),
            ("batch_size", self.batch_size, 1, 1024),
            ("learning_rate", self.learning_rate, 1e-12, 1.0),
            ("learning_rate_multiplier", self.learning_rate_multiplier, 1e-12, 100.0),
        ]
        for name, value, low, high in checks:
            if value != "auto" and not low <= value <= high:
                raise ValueError(f"{name} must be 'auto' or within [{low:g}, {high:g}], got {value}")
        if self.learning_rate != "auto" and self.learning_rate_multiplier != "auto":
            raise ValueError("give learning_rate or learning_rate_multiplier, not both")
        return self

    def resolve(self, n_train: int, default_lr: float, seed: int) -> Hyperparameters:
        """Replace every "auto" with a concrete value for a training file of `n_train` examples."""
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

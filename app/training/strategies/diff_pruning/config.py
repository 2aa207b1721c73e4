"""Settings of diff pruning (Guo, Rush & Kim 2021; hard-concrete gates of Louizos et al. 2018)."""
from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from app.training.config import TaskMethodSettings

Variant = Literal["l0", "magnitude"]
# settings that only shape the L0 (hard-concrete) relaxation; refused with variant "magnitude"
L0_ONLY = ("l0_lambda", "beta", "l", "r", "alpha_init", "alpha_learning_rate")


class DiffPruningSettings(TaskMethodSettings):
    """Diff pruning: a sparse task delta θ = θ₀ + δ over the frozen base weights, δ = z ⊙ w with
    hard-concrete gates z and an expected-L0 penalty, projected to exactly the `target_sparsity`
    largest entries at the end; the new head trains and ships whole (Guo, Rush & Kim 2021,
    "Parameter-Efficient Transfer Learning with Diff Pruning"; Louizos et al. 2018)."""

    unsupported_stability = {
        name: "diff pruning counts its training forwards to know when its mask fixes, and this would add forwards "
              "(a regulariser's noisy passes, or the linear probe's steps)" for name in ("regularizer", "lp_ft")}

    variant: Variant = Field("l0", description=(
        "'l0': Guo et al.'s method, δ = z ⊙ w with hard-concrete gates z trained under an expected-L0 "
        "penalty, then magnitude-projected to the target. 'magnitude': a cheaper baseline, a dense δ without "
        "gates (no sampling or penalty, 2 instead of 3 trainable tensors per base tensor) of which the largest "
        "|δ| entries are kept."))
    target_sparsity: float = Field(0.005, description=(
        "Fraction of the targeted base parameters KEPT in the delta, in (0, 1): 0.005 keeps 0.5% (Guo et al.'s "
        "setting). Targeted = the encoder's weights (the embeddings too with include_embeddings); the artifact "
        "grows linearly with it."))
    include_embeddings: bool = Field(False, description=(
        "Also diff the embedding tables (about half of minilm-l6's parameters); off by default, "
        "so the kept budget goes to the transformer layers."))
    finetune_fraction: float = Field(0.5, ge=0, le=0.9, description=(
        "Fraction of the training steps, at the end, in which the mask is fixed and only the kept entries "
        "(and the head) train, at learning_rate with a fresh optimizer state (Guo et al.'s fixmask fine-tuning, "
        "as long as their first stage); in [0, 0.9]; 0 keeps the projection of the first stage as it is."))
    dense_lr_scale: float = Field(0.1, gt=0, le=10, description=(
        "The dense delta of the first stage learns at this multiple of learning_rate (Guo et al.: 1e-5 there "
        "against 5e-5 in fixmask fine-tuning); learning_rate itself drives the head and the kept entries."))
    l0_lambda: float = Field(1.25e-7, ge=0, le=1, description=(
        "λ of the expected-L0 penalty λ·max(0, E[#non-zero δ] − kept target), per parameter as in Guo et al. "
        "(1.25e-7); 0 leaves the gates to the task loss alone."))
    beta: float = Field(1.0, gt=0, le=10, description="Temperature of the hard-concrete gates (1: Guo et al.).")
    l: float = Field(-1.5, ge=-10, le=10, description=(
        "Left end of the hard-concrete stretch (Louizos et al.'s γ), below 0 so gates can be exactly 0."))
    r: float = Field(1.5, ge=-10, le=10, description=(
        "Right end of the hard-concrete stretch (Louizos et al.'s ζ), above 1 so gates can be exactly 1."))
    alpha_init: float = Field(5.0, ge=-10, le=20, description=(
        "Initial log-α of every gate; 5 (Guo et al.) opens nearly all gates at the start."))
    alpha_learning_rate: float = Field(0.1, gt=0, le=10, description=(
        "Peak learning rate of the log-α gates (Guo et al.: 0.1, against 1e-5 for w); same warm-up and decay "
        "as learning_rate."))

    @field_validator("target_sparsity")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not (math.isfinite(value) and 0 < value < 1):
            raise ValueError(f"target_sparsity is the fraction of base parameters kept in the delta and must lie "
                             f"strictly between 0 and 1 (e.g. 0.005 keeps 0.5%); got {value}")
        return value

    @field_validator("l")
    @classmethod
    def _left(cls, value: float) -> float:
        if value >= 0:
            raise ValueError(f"l must be below 0 (e.g. -1.5) so a gate can be exactly 0; got {value}")
        return value

    @field_validator("r")
    @classmethod
    def _right(cls, value: float) -> float:
        if value <= 1:
            raise ValueError(f"r must be above 1 (e.g. 1.5) so a gate can be exactly 1; got {value}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DiffPruningSettings:
        if self.include_embeddings and self.aux_mlm_weight:
            raise ValueError("include_embeddings cannot combine with aux_mlm_weight > 0: the auxiliary MLM head's "
                             "decoder is tied to the word embeddings; set include_embeddings false or aux_mlm_weight 0")
        if self.variant == "magnitude" and (given := [f for f in L0_ONLY if f in self.model_fields_set]):
            raise ValueError(f"{', '.join(given)} only apply to variant 'l0'; remove them or set variant 'l0'")
        return self

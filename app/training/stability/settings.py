"""The `stability` block of every task method, validated by the API without importing torch.

Each field names the paper it follows; the modules beside this one implement them. The service's own
limits (the most seeds a job may start, whether a validation file came with the job) are not known
here: `StabilitySettings.problems` reports them at submission, as (field, message) pairs.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

EarlyStoppingMetric = Literal["accuracy", "macro_f1", "loss"]
# early_stopping.metric -> (the evaluation's metric, True when higher is better)
METRICS: dict[str, tuple[str, bool]] = {"accuracy": ("eval_accuracy", True), "macro_f1": ("eval_macro_f1", True),
                                        "loss": ("eval_loss", False)}


class EarlyStoppingSettings(BaseModel):
    """Stop when the validation metric has not improved for `patience` evaluations; keep the best."""

    model_config = ConfigDict(extra="forbid")

    patience: int = Field(..., ge=1, le=1000, description=(
        "Evaluations (eval_every, or once per epoch) without a new best before training stops."))
    metric: EarlyStoppingMetric = Field("accuracy", description=(
        "What 'best' means: validation accuracy or macro-F1 (higher; ties go to the lower loss) or loss "
        "(lower; ties go to the higher accuracy). It also chooses the checkpoint the artifact holds."))


class RegularizerSettings(BaseModel):
    """A trust-region term added to the task loss: R3F/R4F (Aghajanyan et al. 2021, "Better Fine-Tuning by
    Reducing Representational Collapse") or SMART (Jiang et al. 2020, "SMART: Robust and Efficient
    Fine-Tuning for Pre-trained Natural Language Models through Principled Regularized Optimization")."""

    model_config = ConfigDict(extra="forbid", serialize_by_alias=True)

    type: Literal["r3f", "r4f", "smart"] = Field(..., description=(
        "r3f: symmetric KL between the outputs on clean and noise-perturbed input embeddings; r4f: r3f plus a "
        "spectrally normalised classification head; smart: an adversarial perturbation (one projected "
        "gradient step) plus a Bregman proximal point term against a momentum teacher."))
    eps: float = Field(1e-5, gt=0, le=1, description=(
        "Noise scale on the input embeddings (r3f/r4f: the normal's σ or the uniform's half-width; smart: "
        "the initial noise's σ and the radius of the perturbation's ∞-norm ball). Papers' default 1e-5."))
    weight: float = Field(1.0, gt=0, le=100, alias="lambda", description=(
        "λ: the weight of the regulariser in the loss (papers' default 1)."))
    noise: Literal["normal", "uniform"] = Field("normal", description=(
        "Distribution of the embedding noise: normal N(0, eps²) or uniform U(-eps, eps)."))


class StabilitySettings(BaseModel):
    """Remedies for unstable fine-tuning on small data; every one is off unless given."""

    model_config = ConfigDict(extra="forbid")

    layerwise_lr_decay: float | None = Field(None, gt=0, le=1, description=(
        "Layer-wise learning-rate decay ξ (ELECTRA, Clark et al. 2020; Zhang et al. 2021, Revisiting "
        "Few-sample BERT Fine-tuning): the head (and anything above the encoder) learns at the full rate, "
        "encoder layer i of L at rate·ξ^(L-i), the embeddings at rate·ξ^(L+1). Trainable parameters only."))
    early_stopping: EarlyStoppingSettings | None = Field(None, description=(
        "Stop when the validation metric has not improved for `patience` evaluations; the artifact is the "
        "best evaluated checkpoint and an event says at which step and why training stopped. Needs a "
        "validation file."))
    lp_ft: bool = Field(False, description=(
        "LP-FT (Kumar et al. 2022, Fine-Tuning can Distort Pretrained Features): first fit the head alone "
        "(a linear probe: half the epochs, rounded up, at learning rate 1e-3), then fine-tune everything the "
        "method trains from that head. Events mark both phases."))
    regularizer: RegularizerSettings | None = Field(None, description=(
        "A trust-region regulariser (r3f, r4f or smart) added to the task loss during fine-tuning."))
    recipe: Literal["auto", "default", "mosbach"] = Field("auto", description=(
        "mosbach (Mosbach et al. 2021, On the Stability of Fine-tuning BERT): the 'auto' hyper-parameters "
        "become a small learning rate (0.4× the method's, 2e-5 for full fine-tuning), 10% warm-up, linear "
        "decay and 20 epochs on small data (under 10,000 examples); AdamW is bias-corrected either way. "
        "Values given explicitly are kept. default: the method's own rule. auto: mosbach for full "
        "fine-tuning on fewer than 500 examples (32 tweets: 80.9% against 68.5% test accuracy, "
        "bench/fewshot.py), otherwise default."))
    n_seeds: int = Field(1, ge=1, description=(
        "Start this many seeds and keep the best (Dodge et al. 2020, Fine-Tuning Pretrained Language "
        "Models: Weight Initializations, Data Orders, and Early Stopping); at most the service's "
        "max_seeds (8 by default). Needs a validation file when above 1."))
    parallel_seeds: Literal["auto"] | int = Field("auto", description=(
        "How many seeds train at once on the worker, each in its own process with its share of the CPU threads "
        "(results equal the seeds run one after another). auto: as many as the free memory holds (an estimate "
        "of one seed's weights, gradients, AdamW state and activations) and, on CPU, at most one per torch "
        "thread; an event says how many and why. An integer: at most n_seeds."))
    discard_after: float = Field(0.25, gt=0, lt=1, description=(
        "Fraction of each seed's fine-tuning steps after which all but the `keep` best seeds (by validation "
        "score) stop."))
    keep: int = Field(1, ge=1, description="Seeds trained to the end after the discard point; at most n_seeds.")

    @field_validator("keep")
    @classmethod
    def _keep_at_most_n_seeds(cls, keep: int, info: ValidationInfo) -> int:
        n_seeds = info.data.get("n_seeds")
        if n_seeds is not None and keep > n_seeds:
            raise ValueError(f"keep ({keep}) must be at most n_seeds ({n_seeds})")
        return keep

    @field_validator("parallel_seeds", mode="before")
    @classmethod
    def _auto_or_a_count(cls, parallel: object) -> object:
        if parallel != "auto" and (isinstance(parallel, bool) or not isinstance(parallel, int)):
            raise ValueError(f"parallel_seeds must be \"auto\" or a whole number of seeds (1 to n_seeds), not "
                             f"{parallel!r}")
        return parallel

    @field_validator("parallel_seeds")
    @classmethod
    def _parallel_within_n_seeds(cls, parallel: str | int, info: ValidationInfo) -> str | int:
        n_seeds = info.data.get("n_seeds")
        if isinstance(parallel, int) and parallel < 1:
            raise ValueError(f"parallel_seeds ({parallel}) must be at least 1, or \"auto\"")
        if isinstance(parallel, int) and n_seeds is not None and parallel > n_seeds:
            raise ValueError(f"parallel_seeds ({parallel}) must be at most n_seeds ({n_seeds}); lower it or raise "
                             "n_seeds")
        return parallel

    @property
    def needs_validation(self) -> list[str]:
        """The fields given that cannot work without a validation file."""
        return [name for name, on in (("early_stopping", self.early_stopping is not None),
                                      ("n_seeds", self.n_seeds > 1)) if on]

    def problems(self, has_validation_file: bool, max_seeds: int) -> list[tuple[str, str]]:
        """(field, message) for what this job cannot have: more seeds than the service allows, or a remedy
        that scores on validation data when the job has none."""
        found = []
        if self.n_seeds > max_seeds:
            found.append(("n_seeds", f"n_seeds={self.n_seeds} is above this service's maximum of {max_seeds}; "
                                     f"choose n_seeds ≤ {max_seeds}"))
        if not has_validation_file:
            found += [(name, f"{name} scores on validation data; give a validation_file or leave {name} out")
                      for name in self.needs_validation]
        return found

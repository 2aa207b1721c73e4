"""Settings of bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2020 placement)."""
from __future__ import annotations

import copy
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from app.training.base_facts import BaseFacts, BaseProblem
from app.training.config import TaskMethodSettings

Placement = Literal["houlsby", "pfeiffer"]
NonLinearity = Literal["relu", "gelu", "swish"]


class AdapterSettings(TaskMethodSettings):
    """Bottleneck adapters: small down-project / non-linearity / up-project blocks with a residual,
    inserted in every layer of a frozen BERT-family encoder; only they and the head train
    (Houlsby et al. 2019, "Parameter-Efficient Transfer Learning for NLP"; Pfeiffer et al. 2020,
    "AdapterFusion")."""

    placement: Placement = Field("pfeiffer", description=(
        "Where adapters go in each layer: 'pfeiffer' after the feed-forward output only (Pfeiffer et al. "
        "2020), 'houlsby' after the attention output and after the feed-forward output (Houlsby et al. 2019)."))
    reduction_factor: int = Field(16, ge=1, le=1024, description=(
        "hidden size / bottleneck size (1-1024); the bottleneck is hidden_size // reduction_factor and must "
        "be at least 1 (checked against the base model at submission). AdapterHub's default is 16."))
    non_linearity: NonLinearity = Field("relu", description=(
        "Activation inside the bottleneck: relu (AdapterHub's Pfeiffer default), gelu or swish "
        "(AdapterHub's Houlsby default)."))
    train_layer_norm: bool = Field(False, description=(
        "Also train the base model's LayerNorm weights and biases, as Houlsby et al. 2019 did; they then "
        "ship in the artifact."))
    init_scale: float = Field(1e-3, gt=0, le=1, description=(
        "Standard deviation of the truncated-normal initialisation of both projections (Houlsby et al. "
        "2019's near-identity init, 1e-3 in their code); in (0, 1]: at 0 no gradient would flow."))
    stack: list[str] | None = Field(None, max_length=8, description=(
        "MAD-X stacking (Pfeiffer et al. 2020): ids of your own succeeded jobs whose artifact is a bottleneck "
        "adapter (a language adapter from `adaptive` with `adapter`, or an adapter job), trained on this job's "
        "base model; they load frozen under this task adapter in every layer, in the order given (first = "
        "lowest). Their adapter files are copied into this artifact (bottleneck/stack/<i>/), so it reloads on "
        "the base alone, and any of them can be swapped for another at load time (zero-shot transfer)."))

    @field_validator("stack")
    @classmethod
    def _stack_names_distinct_jobs(cls, stack: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if stack is None:
            return None
        if not stack:
            raise ValueError("stack is empty; name at least one adapter job id (ftjob-…), or leave stack out")
        if not_jobs := [job for job in stack if not job.startswith("ftjob-") or len(job) > 64]:
            raise ValueError(f"stack holds fine-tuning job ids (ftjob-…); {not_jobs[:3]} are not")
        if twice := sorted({job for job in stack if stack.count(job) > 1}):
            raise ValueError(f"stack names {twice} more than once; each adapter can sit in the stack once")
        if info.data.get("drop_top_layers"):
            raise ValueError("stack cannot combine with drop_top_layers: the stacked adapters sit in every layer "
                             "of the base; set drop_top_layers to 0 or leave stack out")
        return stack

    def check_base(self, facts: BaseFacts) -> list[BaseProblem]:
        """The bottleneck hidden_size // reduction_factor must keep at least one unit."""
        problems = super().check_base(facts)
        if (problem := width_problem(facts, self.reduction_factor)) is not None:
            problems.append(("reduction_factor", problem))
        return problems


def width_problem(facts: BaseFacts, factor: int) -> str | None:
    """What to change when hidden_size // reduction_factor leaves a bottleneck no width, else None."""
    hidden = facts.hidden_size
    if hidden is None or hidden // factor >= 1:
        return None
    return (f"{facts.name} has hidden size {hidden}, and {hidden} // {factor} = 0 leaves the bottleneck no width; "
            f"choose reduction_factor ≤ {hidden}")


def _as_in_adapter(name: str):
    """AdapterSettings' field `name` (its bounds and help text), for a setting both models share."""
    return copy.copy(AdapterSettings.model_fields[name])


class LanguageAdapterSettings(BaseModel):
    """A language adapter (Pfeiffer et al. 2020, "MAD-X: An Adapter-Based Framework for Multi-Task
    Cross-Lingual Transfer"): a bottleneck adapter trained with the masked-LM objective on a corpus,
    the base frozen, later stacked under task adapters (`adapter.stack`) and swappable at load time."""

    model_config = ConfigDict(extra="forbid")

    placement: Placement = _as_in_adapter("placement")
    reduction_factor: int = Field(2, ge=1, le=1024, description=(
        "hidden size / bottleneck size (1-1024), checked against the base model at submission. MAD-X's language "
        "adapters use 2 (~4% of MiniLM-L6 in weights, copied into every artifact that stacks it); 16 stays "
        "under 1%."))
    non_linearity: NonLinearity = _as_in_adapter("non_linearity")
    init_scale: float = _as_in_adapter("init_scale")

"""Settings of bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2020 placement)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

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

    def check_base(self, facts: BaseFacts) -> list[BaseProblem]:
        """The bottleneck hidden_size // reduction_factor must keep at least one unit."""
        problems = super().check_base(facts)
        hidden, factor = facts.hidden_size, self.reduction_factor
        if hidden is not None and hidden // factor < 1:
            problems.append(("reduction_factor", f"{facts.name} has hidden size {hidden}, and {hidden} // {factor} = 0 "
                                                 f"leaves the bottleneck no width; choose reduction_factor ≤ {hidden}"))
        return problems

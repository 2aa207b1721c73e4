from __future__ import annotations

from pydantic import Field, model_validator

from app.training.base_facts import BaseFacts, BaseProblem, is_embedding, numel
from app.training.config import TaskMethodSettings

MAX_D = 100_000_000  # beyond this a dense delta of a supported base is smaller than θ_d


class SaidSettings(TaskMethodSettings):
    """Intrinsic-dimension fine-tuning: θ = θ₀ + P·θ_d with a fixed seeded Fastfood projection P; only
    θ_d (and the new head) trains. With `said`, each base tensor i also gets a trained scalar λ_i:
    θ_i = θ₀,i + λ_i·P_i·θ_{d-m} (Aghajanyan, Zettlemoyer & Gupta 2021, "Intrinsic Dimensionality
    Explains the Effectiveness of Language Model Fine-Tuning"; without λ it is their DID)."""

    d: int = Field(1000, ge=1, le=MAX_D, description=(
        "Intrinsic dimension: the number of trained numbers besides the head (SAID: d - m shared "
        "coordinates + one λ per projected tensor). At most the number of projected base parameters, "
        "checked against the model at submission."))
    said: bool = Field(True, description=(
        "Structure-aware (SAID): one trained scale λ_i per base tensor; false gives plain DID."))
    include_embeddings: bool = Field(False, description=(
        "Also project the embedding tables (word, position, token type); off by default since the word "
        "embeddings dominate small encoders such as MiniLM."))
    projection_seed: int | None = Field(None, ge=0, le=2**63 - 1, description=(
        "Seed of the random projection (recorded in the artifact, which rebuilds P from it); default: "
        "derived from the job's seed."))

    @model_validator(mode="after")
    def _consistent(self) -> SaidSettings:
        if self.said and self.d < 2:
            raise ValueError("d must be at least 2 with said: true (one λ per tensor plus at least one shared "
                             "coordinate); raise d or set said: false")
        if self.include_embeddings and self.aux_mlm_weight:
            raise ValueError("include_embeddings cannot be combined with aux_mlm_weight > 0: the auxiliary MLM "
                             "head ties its output layer to the word embeddings, which SAID would reparametrize; "
                             "turn one off")
        return self

    def check_base(self, facts: BaseFacts) -> list[BaseProblem]:
        """d within the projected parameters of the base (and above their tensor count under SAID),
        counted as the strategy's select_targets does: the pretrained tensors left after
        drop/reinit_top_layers, embedding tables only with include_embeddings."""
        problems = super().check_base(facts)
        if problems or facts.tensors is None:
            return problems
        shapes = [shape for name, shape in facts.pretrained_tensors(self.drop_top_layers, self.reinit_top_layers).items()
                  if self.include_embeddings or not is_embedding(name)]
        total, scope = sum(map(numel, shapes)), "including" if self.include_embeddings else "excluding"
        if self.d > total:
            return [("d", f"d={self.d} exceeds the {total:,} parameters of {facts.name} that are projected "
                          f"({len(shapes)} tensors, {scope} embeddings); choose d ≤ {total}")]
        if self.said and self.d <= len(shapes):
            return [("d", f"d={self.d} leaves no shared dimension: SAID spends one of d on the scale of each of the "
                          f"{len(shapes)} projected tensors of {facts.name}; choose d > {len(shapes)} or said: false")]
        return []

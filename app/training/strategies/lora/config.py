from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.training.base_facts import BaseFacts, BaseProblem, target_problems
from app.training.config import TaskMethodSettings


class LoraSettings(TaskMethodSettings):
    """LoRA: low-rank updates of chosen linear layers, head trained alongside (Hu et al. 2021)."""

    r: int = Field(8, ge=1, le=256, description="Rank of the low-rank update matrices.")
    lora_alpha: float = Field(16, gt=0, le=4096, description="Scaling numerator: updates are scaled by alpha/r.")
    lora_dropout: float = Field(0.1, ge=0, le=0.9, description="Dropout on the LoRA branch input.")
    target_modules: list[str] | Literal["all-linear"] | None = Field(None, min_length=1, description=(
        'Names of linear modules to adapt, or "all-linear" (every linear layer of the encoder); '
        "default: attention query and value."))
    bias: Literal["none", "all", "lora_only"] = Field("none", description="Which biases train with the adapter.")
    use_rslora: bool = Field(False, description=(
        "Rank-stabilised scaling alpha/sqrt(r) instead of alpha/r (Kalajdzievski 2023), better at large r."))
    use_dora: bool = Field(False, description=(
        "DoRA: learn each weight's magnitude apart from its LoRA-updated direction (Liu et al. 2024)."))
    train_pooler: bool = Field(False, description=(
        "Also train the base's pretrained pooler whole (it ships inside the adapter, +hidden² weights): a frozen "
        "pooler is a known weak spot of sentence-embedding bases such as minilm-l6."))
    modules_to_save: list[str] | None = Field(None, min_length=1, description=(
        "Further base modules (by name, e.g. 'pooler') trained whole and shipped inside the adapter."))

    def check_base(self, facts: BaseFacts) -> list[BaseProblem]:
        """modules_to_save and target_modules must name modules of the base (peft would fail on them)."""
        problems = super().check_base(facts)
        if facts.tensors is None:
            return problems
        if unknown := [m for m in self.modules_to_save or [] if not facts.has_module(m)]:
            top = sorted(m for m in facts.modules if "." not in m)
            problems.append(("modules_to_save", f"{unknown} name no module of {facts.name}; name modules it has, "
                                                f"such as {top} or a path below them"))
        if isinstance(self.target_modules, list):
            whole = {*(self.modules_to_save or []), *(["pooler"] if self.train_pooler else [])}
            problems += target_problems(facts, self.target_modules, whole)
        return problems

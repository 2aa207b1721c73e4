from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.training.base_facts import BaseFacts, BaseProblem
from app.training.config import TaskMethodSettings
from app.training.lora_shape import LoraShape


class LoraSettings(LoraShape, TaskMethodSettings):  # r, lora_alpha, lora_dropout, target_modules: LoraShape's
    """LoRA: low-rank updates of chosen linear layers, head trained alongside (Hu et al. 2021)."""

    bias: Literal["none", "all", "lora_only"] = Field("none", description="Which biases train with the adapter.")
    use_rslora: bool = Field(False, description=(
        "Rank-stabilised scaling alpha/sqrt(r) instead of alpha/r (Kalajdzievski 2023), better at large r."))
    use_dora: bool = Field(False, description=(
        "DoRA: learn each weight's magnitude apart from its LoRA-updated direction (Liu et al. 2024)."))
    modules_to_save: list[str] | None = Field(None, min_length=1, description=(
        "Further base modules (by name, e.g. 'pooler') trained whole and shipped inside the adapter."))

    def check_base(self, facts: BaseFacts) -> list[BaseProblem]:
        """modules_to_save and target_modules (given, or the defaults) must name modules of the base
        (peft would fail on them)."""
        problems = super().check_base(facts)
        if facts.tensors is None:
            return problems
        if unknown := [m for m in self.modules_to_save or [] if not facts.has_module(m)]:
            top = sorted(m for m in facts.modules if "." not in m)
            problems.append(("modules_to_save", f"{unknown} name no module of {facts.name}; name modules it has, "
                                                f"such as {top} or a path below them"))
        whole = {*(self.modules_to_save or []), *(["pooler"] if self.train_pooler else [])}
        return problems + self.encoder_target_problems(facts, whole)

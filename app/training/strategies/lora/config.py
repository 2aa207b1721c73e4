from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.training.base_facts import BaseFacts, BaseProblem, target_problems
from app.training.config import TaskMethodSettings

# What LoRA adapts when no target_modules are given: each encoder family's attention query and value
DEFAULT_TARGETS: dict[str, list[str]] = {"bert": ["query", "value"], "roberta": ["query", "value"],
                                         "distilbert": ["q_lin", "v_lin"]}
FALLBACK_TARGETS = ["query", "value"]  # a model_type without an entry above


def default_targets(model_type: str) -> list[str]:
    """The target_modules LoRA uses for a base of `model_type` when the job names none."""
    return list(DEFAULT_TARGETS.get(model_type, FALLBACK_TARGETS))


def default_target_problems(facts: BaseFacts, exclude: set[str]) -> list[BaseProblem]:
    """The defaults naming layers the base lacks (a model_type without defaults, e.g. DeBERTa's
    query_proj): the job must name its own target_modules, and the message says which it may name."""
    targets = default_targets(facts.model_type)
    available = facts.linear_names(exclude)
    if facts.tensors is None or all(t in available for t in targets):
        return []
    why = (f"the default for model_type {facts.model_type!r}" if facts.model_type in DEFAULT_TARGETS else
           f"the fallback for model_type {facts.model_type!r}, which has no default")
    return [("target_modules", f"not given, and {targets} ({why}) are not linear layers of {facts.name}; set "
                               f'target_modules to the layers to adapt, chosen from {available}, or to "all-linear"')]


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
        if isinstance(self.target_modules, list):
            problems += target_problems(facts, self.target_modules, whole)
        elif self.target_modules is None:
            problems += default_target_problems(facts, whole)
        return problems

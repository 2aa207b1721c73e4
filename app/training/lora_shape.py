"""The shape of a LoRA adapter (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"),
one definition for every method that offers LoRA: lora, cloze's peft, adaptive's peft and text_to_text's
peft. Each takes these fields under the same names, bounds and help; a method whose default differs says
so in its own subclass. Validated by the API, so peft is imported only where a LoraConfig is built."""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.training.base_facts import BaseFacts, BaseProblem, target_problems

if TYPE_CHECKING:
    from peft import LoraConfig

LoraRank = Annotated[int, Field(ge=1, le=256, description="Rank of the low-rank update matrices.")]
LoraAlpha = Annotated[float, Field(gt=0, le=4096, description="Scaling numerator: updates are scaled by alpha/r.")]
LoraDropout = Annotated[float, Field(ge=0, le=0.9, description="Dropout on the LoRA branch input.")]
LoraTargets = Annotated[list[str] | Literal["all-linear"] | None, Field(min_length=1, description=(
    'Names of linear modules to adapt, or "all-linear" (every linear layer of the encoder); '
    "default: attention query and value."))]

# What LoRA adapts on an encoder when no target_modules are given: each family's attention query and value
DEFAULT_TARGETS: dict[str, list[str]] = {"bert": ["query", "value"], "roberta": ["query", "value"],
                                         "distilbert": ["q_lin", "v_lin"]}
FALLBACK_TARGETS = ["query", "value"]  # a model_type without an entry above


def default_targets(model_type: str) -> list[str]:
    """The target_modules LoRA uses for an encoder of `model_type` when the job names none."""
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


class LoraShape(BaseModel):
    """What a LoRA adapter is: its rank, scaling, dropout and the layers it adapts (Hu et al. 2021)."""

    model_config = ConfigDict(extra="forbid")

    r: LoraRank = 8
    lora_alpha: LoraAlpha = 16
    lora_dropout: LoraDropout = 0.1
    target_modules: LoraTargets = None

    def encoder_target_problems(self, facts: BaseFacts, exclude: set[str] = frozenset()) -> list[BaseProblem]:
        """target_modules (given, or the encoder defaults) must name linear layers of the base outside
        `exclude` (modules trained whole): peft would fail on them."""
        if self.target_modules == "all-linear":
            return []
        if self.target_modules is None:
            return default_target_problems(facts, exclude)
        return target_problems(facts, self.target_modules, exclude)

    def peft_config(self, target_modules: list[str] | str | None, **more: Any) -> LoraConfig:
        """peft's LoraConfig of this shape over `target_modules` (resolved by the method); `more` holds the
        method's own options (task_type, modules_to_save, bias, …)."""
        from peft import LoraConfig

        return LoraConfig(r=self.r, lora_alpha=self.lora_alpha, lora_dropout=self.lora_dropout,
                          target_modules=target_modules, **more)

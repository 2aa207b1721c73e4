from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from app.training.base_facts import BaseFacts, BaseProblem, target_problems
from app.training.config import TaskMethodSettings


class IA3Settings(TaskMethodSettings):
    """(IA)³: learned vectors rescale the keys, values and feed-forward activations; the head trains
    alongside (Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than
    In-Context Learning")."""

    target_modules: list[str] | Literal["all-linear"] | None = Field("all-linear", min_length=1, description=(
        'Linear modules whose activations are rescaled (names or path suffixes). "all-linear", the default: '
        "the output of every linear layer of the encoder, pooler included (on minilm-l6, 1,000 election tweets, "
        "3 seeds: 93.47 ± 0.42 test, validation 92.9, against 92.85 ± 0.59 and 92.1 for peft's choice; "
        "bench/peft.py). null: peft's choice for the base, T-Few's placement (BERT: key, value, and the "
        "feed-forward output layer's input)."))
    feedforward_modules: list[str] | None = Field(None, description=(
        "Which of target_modules are feed-forward layers (their input is rescaled, not their output); "
        "default: none of named or all-linear targets, peft's choice when target_modules is null."))

    @model_validator(mode="after")
    def _feedforward_among_targets(self) -> IA3Settings:
        if self.feedforward_modules is not None:
            if not isinstance(self.target_modules, list):
                raise ValueError("feedforward_modules needs target_modules named as a list (it names a subset "
                                 "of them)")
            if stray := sorted(set(self.feedforward_modules) - set(self.target_modules)):
                raise ValueError(f"feedforward_modules {stray} are not among target_modules")
        return self

    def check_base(self, facts: BaseFacts) -> list[BaseProblem]:
        """target_modules must name linear layers of the base (peft would fail on them)."""
        named = self.target_modules if isinstance(self.target_modules, list) else []
        return super().check_base(facts) + target_problems(facts, named)

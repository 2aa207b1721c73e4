from __future__ import annotations

from pydantic import Field, model_validator

from app.training.base_facts import BaseFacts, BaseProblem, target_problems
from app.training.config import TaskMethodSettings


class IA3Settings(TaskMethodSettings):
    """(IA)³: learned vectors rescale the keys, values and feed-forward activations; the head trains
    alongside (Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than
    In-Context Learning")."""

    target_modules: list[str] | None = Field(None, min_length=1, description=(
        "Names of linear modules whose activations are rescaled; default: peft's choice for the base "
        "(BERT: key, value, output.dense)."))
    feedforward_modules: list[str] | None = Field(None, description=(
        "Which of target_modules are feed-forward layers (their input is rescaled, not their output); "
        "default: peft's choice for the base."))

    @model_validator(mode="after")
    def _feedforward_among_targets(self) -> IA3Settings:
        if self.feedforward_modules is not None:
            if self.target_modules is None:
                raise ValueError("feedforward_modules needs target_modules (it names a subset of them)")
            if stray := sorted(set(self.feedforward_modules) - set(self.target_modules)):
                raise ValueError(f"feedforward_modules {stray} are not among target_modules")
        return self

    def check_base(self, facts: BaseFacts) -> list[BaseProblem]:
        """target_modules must name linear layers of the base (peft would fail on them)."""
        return super().check_base(facts) + target_problems(facts, self.target_modules or [])

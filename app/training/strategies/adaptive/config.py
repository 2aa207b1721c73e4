from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from app.training.config import MethodSettings
from app.training.masking import MaskingSettings


def adapted_model_id(job_id: str) -> str:
    """The id an adaptive job's encoder is registered under; its task artifact names it as base."""
    return f"adapted:{job_id}"


class AdaptiveSettings(MethodSettings):
    """Adaptive pretraining (Gururangan et al. 2020, "Don't Stop Pretraining"): continued masked-LM
    training on a domain corpus (DAPT; a corpus in another language makes it language-adaptive) and/or
    on the task's own texts (TAPT), in that order, then optionally a task method on the adapted
    encoder. `hyperparameters` is the MLM phases' schedule; the task method brings its own."""

    corpus_file: str | None = Field(None, description=(
        'DAPT: id of an uploaded file (purpose fine-tune) of {"text": "..."} rows; other fields are ignored.'))
    tapt: bool = Field(False, description="TAPT: continue MLM on the training file's texts (labels ignored).")
    mlm: MaskingSettings = Field(default_factory=MaskingSettings, description="Masking of the MLM phases.")
    then: dict[str, Any] | None = Field(None, description=(
        'A task method trained on the adapted encoder in the same job, e.g. {"type": "lora", "lora": {"r": 8}}; '
        "omitted: the job's result is the adapted encoder alone."))

    @classmethod
    def file_fields(cls) -> tuple[str, ...]:
        return ("corpus_file",)

    @model_validator(mode="after")
    def _something_to_adapt_on(self) -> AdaptiveSettings:
        if self.corpus_file is None and not self.tapt:
            raise ValueError("give corpus_file (domain-adaptive pretraining), tapt: true (task-adaptive), or both")
        return self

    @field_validator("then")
    @classmethod
    def _task_method(cls, then: dict[str, Any] | None) -> dict[str, Any] | None:
        if then is None:
            return None
        from app.training.registry import UnknownStrategyError, get_strategy  # the registry imports this module

        kind = then.get("type")
        if kind == "adaptive" or not isinstance(kind, str):
            raise ValueError("then.type must name a task method such as 'supervised', 'lora' or 'bitfit'")
        try:
            spec = get_strategy(kind)
        except UnknownStrategyError as exc:
            raise ValueError(str(exc)) from None
        if set(then) - {"type", kind}:
            raise ValueError(f"then may hold only 'type' and '{kind}', got {sorted(then)}")
        try:
            settings = spec.settings_model.model_validate(then.get(kind) or {})
        except ValidationError as exc:  # re-raised flat, so the error names the full path from `then`
            first = exc.errors()[0]
            raise ValueError(f"{'.'.join(map(str, (kind, *first['loc'])))}: {first['msg']}") from None
        return {"type": kind, kind: settings.model_dump(mode="json", exclude_unset=True)}

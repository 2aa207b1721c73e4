"""What the API returns, as typed objects. Parsing is lenient on purpose (unknown fields are kept, not
refused): a newer server that adds a field must not break an older client."""
from __future__ import annotations

from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

FINAL_STATUSES = ("succeeded", "failed", "cancelled")
T = TypeVar("T")


class WireObject(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class FileObject(WireObject):
    id: str
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: str | None = None
    sha256: str | None = None


class JobError(WireObject):
    code: str | None = None
    message: str | None = None
    param: str | None = None


class Job(WireObject):
    id: str
    status: str
    model: str
    created_at: int
    finished_at: int | None = None
    fine_tuned_model: str | None = None
    training_file: str
    validation_file: str | None = None
    method: dict[str, Any] | None = None
    hyperparameters: dict[str, Any] | None = None
    error: JobError | None = None
    seed: int | None = None
    suffix: str | None = None
    metadata: dict[str, str] | None = None
    trained_tokens: int | None = None
    estimated_finish: int | None = None
    metrics: dict[str, Any] | None = None

    @property
    def method_type(self) -> str:
        return (self.method or {}).get("type", "supervised")

    @property
    def finished(self) -> bool:
        return self.status in FINAL_STATUSES


class JobEvent(WireObject):
    id: str
    created_at: int
    level: str
    message: str
    type: str | None = None
    data: dict[str, Any] | None = None


class Artifact(WireObject):
    """One file of a job's artifact as the server recorded it (the manifest list)."""

    name: str
    bytes: int
    sha256: str


class Model(WireObject):
    id: str
    created: int
    owned_by: str
    kind: str | None = None  # encoder, seq2seq or decoder (a fine-tuned model: its base's)


class Prediction(WireObject):
    index: int
    label: str | int | None = None
    probabilities: dict[str, float] = {}


class PredictionList(WireObject):
    model: str
    data: list[Prediction]


class Page(WireObject, Generic[T]):
    """A list answer: its objects and whether more follow (pass the last id as `after`)."""

    data: list[T]
    has_more: bool = False

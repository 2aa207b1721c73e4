"""The errors a strategy raises for a user to act on; a leaf module (it imports nothing of the app), so the
modules that app.training.base itself depends on (config, base facts, adapted bases) can raise them too."""
from __future__ import annotations

from pathlib import Path


class TrainingError(Exception):
    """A failure the user can act on (bad labels, NaN loss, OOM). `code` lands in the job's error."""

    def __init__(self, message: str, code: str = "training_failed", param: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param


class BaseModelMissing(TrainingError):
    """A base model's directory is gone from this host and the object store: say which model, where it was looked
    for, and how an operator brings it back, instead of a FileNotFoundError from deep inside a load."""

    def __init__(self, model_id: str, path: Path | str, sha256: str | None = None):
        content = f" (sha256 {sha256[:12]}…)" if sha256 else ""
        super().__init__(f"Base model {model_id!r}{content} is neither at {path} nor in the object store, so the "
                         f"models built on it cannot load. An operator can register the same files again with "
                         f"`tuneforge models add {model_id} <directory>`, then retry.", code="base_model_missing",
                         param="model")
        self.model_id, self.path = model_id, Path(path)

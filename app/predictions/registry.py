"""The process's prediction runtime: the batcher's queue in front of the engines.

Torch-free to import: the engines (and torch) load on the inference thread with the first request,
so `import app.main` stays light and an API process that serves no predictions never loads torch.
"""
from __future__ import annotations

from concurrent.futures import Future
from functools import lru_cache
from typing import TYPE_CHECKING

from app.core.config import get_settings
from app.predictions.batcher import Batcher, Input, Work
from app.predictions.served import ServedModel

if TYPE_CHECKING:
    from app.predictions.engines import Engines


class PredictionRuntime:
    def __init__(self, max_adapters: int, max_models: int, batch_rows: int):
        self._limits = (max_adapters, max_models, batch_rows)
        self._engines: Engines | None = None
        self._batcher = Batcher(self._run, batch_rows)

    def submit(self, served: ServedModel, inputs: list[Input]) -> Future:
        """A future of the logits, one row per input, in the served model's label order."""
        return self._batcher.submit(Work(served, inputs))

    def predict(self, served: ServedModel, inputs: list[Input], timeout: float | None = None) -> list[list[float]]:
        return self.submit(served, inputs).result(timeout)

    @property
    def engines(self) -> Engines:
        """The loaded models (created on the inference thread by the first request); for tests and benchmarks."""
        if self._engines is None:
            raise RuntimeError("no prediction has run in this runtime yet")
        return self._engines

    def _run(self, works: list[Work]) -> None:
        if self._engines is None:
            from app.predictions.engines import Engines

            self._engines = Engines(*self._limits)
        self._engines.run(works)


@lru_cache
def get_runtime() -> PredictionRuntime:
    """This process's runtime, sized by the settings (predictions_max_adapters, …)."""
    settings = get_settings()
    return PredictionRuntime(settings.predictions_max_adapters, settings.predictions_max_models,
                             settings.predictions_batch_rows)

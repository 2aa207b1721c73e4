"""Strategy registry, on PEFT's model (`tuners/<method>/__init__.py` registers the method).

Each package `app/training/strategies/<name>/` declares its own `StrategySpec` in `__init__.py`,
which imports only the package's `config.py`; this module names no method. Discovery imports those
packages on first use, so the API validates a job spec without importing torch.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from app.training.base import TrainContext, TrainResult
from app.training.config import AutoRule, MethodSettings
from app.training.data import CLASSIFICATION, TASK_TYPES

STRATEGIES_PACKAGE = "app.training.strategies"
# How a fresh process loads an artifact: plain transformers (`model/`), plain peft over the shared base
# (`adapter/`), or tuneforge's own loader (app.training.artifacts.load_classifier), or no task model.
Reload = Literal["transformers", "peft", "tuneforge", "none"]


class UnknownStrategyError(KeyError):
    def __str__(self) -> str:
        return self.args[0]


@dataclass(frozen=True)
class StrategySpec:
    """Everything the service, the API and the test matrix need to know about one method."""

    name: str
    settings_model: type[MethodSettings]
    entrypoint: str  # "module:function", imported only when a job runs
    paper: str
    auto: AutoRule  # what "auto" hyper-parameters resolve to, and where the rule comes from
    artifact_files: tuple[str, ...]  # files every artifact holds besides manifest.json; the weights file first
    reload: Reload
    # "module:function" applying an artifact over a freshly loaded base classifier,
    # apply(model, artifact_dir) -> model; None: the artifact's `model/` is a whole model
    apply: str | None = None
    # "module:function" giving the tokenizer the applied model reads, tokenizer(base tokenizer, artifact_dir);
    # None: the base's own (cloze wraps it in the job's patterns)
    tokenizer: str | None = None
    # the task types of training files the method trains (app.training.data.TASK_TYPES), or ("masked_lm",)
    task_kinds: tuple[str, ...] = TASK_TYPES
    task_note: str = ""  # why a task method trains fewer than every task type (shown in the 400)
    base_model_kinds: tuple[str, ...] = ("encoder",)
    default: bool = False  # the method of a job that names none

    @property
    def trains_task(self) -> bool:
        """A task method: it fine-tunes on the labelled task, so it may follow another method."""
        return CLASSIFICATION in self.task_kinds

    @property
    def task_reason(self) -> str:
        """Why the method trains only its task_kinds: the spec's note, or the list itself."""
        return self.task_note or f"it trains {', '.join(self.task_kinds)} only"

    def load(self) -> Callable[[TrainContext], TrainResult]:
        return _resolve(self.entrypoint)

    def load_apply(self) -> Callable[[Any, Path], Any] | None:
        return _resolve(self.apply) if self.apply else None

    def load_tokenizer(self) -> Callable[[Any, Path], Any] | None:
        return _resolve(self.tokenizer) if self.tokenizer else None


def _resolve(reference: str) -> Callable:
    module, _, function = reference.partition(":")
    return getattr(importlib.import_module(module), function)


_STRATEGIES: dict[str, StrategySpec] = {}
_discovered = False


def register_strategy(spec: StrategySpec) -> StrategySpec:
    """Called by a strategy package's `__init__.py`."""
    if spec.name in _STRATEGIES:
        raise ValueError(f"strategy {spec.name!r} is already registered")
    if spec.default and any(s.default for s in _STRATEGIES.values()):
        raise ValueError(f"strategy {spec.name!r} claims to be the default, but one already is")
    _STRATEGIES[spec.name] = spec
    return spec


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    package = importlib.import_module(STRATEGIES_PACKAGE)
    for info in pkgutil.iter_modules(package.__path__):
        if info.ispkg:
            importlib.import_module(f"{STRATEGIES_PACKAGE}.{info.name}")


def get_strategy(name: str) -> StrategySpec:
    _discover()
    try:
        return _STRATEGIES[name]
    except KeyError:
        known = ", ".join(sorted(_STRATEGIES))
        raise UnknownStrategyError(f"Unknown method.type {name!r}; choose one of: {known}.") from None


def list_strategies() -> list[StrategySpec]:
    _discover()
    return sorted(_STRATEGIES.values(), key=lambda s: s.name)


def default_strategy() -> StrategySpec:
    return next(spec for spec in list_strategies() if spec.default)


def task_method_names() -> list[str]:
    return [spec.name for spec in list_strategies() if spec.trains_task]


def run_strategy(ctx: TrainContext) -> TrainResult:
    return get_strategy(ctx.method).load()(ctx)

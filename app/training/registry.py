"""Strategy registry (PEFT-style): adding a method = one folder + one `register_strategy` line.

Only settings models are imported here, so the API can validate a job spec without torch.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from app.training.base import TrainContext, TrainResult
from app.training.config import MethodSettings
from app.training.strategies.adaptive.config import AdaptiveSettings
from app.training.strategies.bitfit.config import BitFitSettings
from app.training.strategies.lora.config import LoraSettings
from app.training.strategies.supervised.config import SupervisedSettings


class UnknownStrategyError(KeyError):
    def __str__(self) -> str:
        return self.args[0]


@dataclass(frozen=True)
class StrategySpec:
    name: str
    settings_model: type[MethodSettings]
    entrypoint: str  # "module:function", imported only when a job runs
    paper: str
    default_learning_rate: float
    task_kinds: tuple[str, ...] = ("sequence_classification",)

    def load(self) -> Callable[[TrainContext], TrainResult]:
        module, _, function = self.entrypoint.partition(":")
        return getattr(importlib.import_module(module), function)


_STRATEGIES: dict[str, StrategySpec] = {}


def register_strategy(spec: StrategySpec) -> StrategySpec:
    if spec.name in _STRATEGIES:
        raise ValueError(f"strategy {spec.name!r} is already registered")
    _STRATEGIES[spec.name] = spec
    return spec


def get_strategy(name: str) -> StrategySpec:
    try:
        return _STRATEGIES[name]
    except KeyError:
        known = ", ".join(sorted(_STRATEGIES))
        raise UnknownStrategyError(f"Unknown method.type {name!r}; choose one of: {known}.") from None


def list_strategies() -> list[StrategySpec]:
    return sorted(_STRATEGIES.values(), key=lambda s: s.name)


def run_strategy(ctx: TrainContext) -> TrainResult:
    return get_strategy(ctx.method).load()(ctx)


_PKG = "app.training.strategies"
register_strategy(StrategySpec("supervised", SupervisedSettings, f"{_PKG}.supervised.strategy:train",
                               "Devlin et al. 2019, BERT", 5e-5))
register_strategy(StrategySpec("lora", LoraSettings, f"{_PKG}.lora.strategy:train",
                               "Hu et al. 2021, LoRA", 5e-4))
register_strategy(StrategySpec("bitfit", BitFitSettings, f"{_PKG}.bitfit.strategy:train",
                               "Ben-Zaken et al. 2021, BitFit", 1e-3))
register_strategy(StrategySpec("adaptive", AdaptiveSettings, f"{_PKG}.adaptive.strategy:train",
                               "Gururangan et al. 2020, Don't Stop Pretraining", 1e-4))

"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2020): adapters + head train, base frozen."""
from app.training.config import AutoRule
from app.training.registry import StrategySpec, register_strategy
from app.training.strategies.adapter.config import AdapterSettings

SPEC = register_strategy(StrategySpec(
    name="adapter", settings_model=AdapterSettings, entrypoint=f"{__name__}.strategy:train",
    paper="Houlsby et al. 2019, Parameter-Efficient Transfer Learning for NLP; Pfeiffer et al. 2020, AdapterFusion",
    auto=AutoRule(learning_rate=1e-3, max_epochs=10, source=(
        "He et al. 2021, On the Effectiveness of Adapter-based Tuning, and AdapterHub: lr 1e-3 for "
        "adapters (Houlsby et al. 2019 swept 1e-4..1e-3)")),
    artifact_files=("bottleneck/adapter_model.safetensors", "bottleneck/adapter_config.json"),
    reload="tuneforge", apply="app.training.strategies.adapter.apply:apply_adapter"))

"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2020): adapters + head train, base frozen."""
from app.training.config import AutoRule
from app.training.registry import StrategySpec, register_strategy
from app.training.strategies.adapter.config import AdapterSettings

SPEC = register_strategy(StrategySpec(
    name="adapter", settings_model=AdapterSettings, entrypoint=f"{__name__}.strategy:train",
    paper="Houlsby et al. 2019, Parameter-Efficient Transfer Learning for NLP; Pfeiffer et al. 2020, AdapterFusion",
    auto=AutoRule(learning_rate=3e-3, max_epochs=10, source=(
        "bench/peft.py grid on minilm-l6, 1,000 election tweets, seed 0, chosen on validation accuracy: 10 epochs "
        "at 3e-3 93.0 against 92.6 at 1e-3, the rate of He et al. 2021 and AdapterHub (Houlsby et al. 2019 swept "
        "1e-4..1e-3 on BERT-large); training the pooler too did not help (92.0)")),
    artifact_files=("bottleneck/adapter_model.safetensors", "bottleneck/adapter_config.json"),
    reload="tuneforge", apply="app.training.strategies.adapter.apply:apply_adapter"))

"""Adaptive pretraining (Gururangan et al. 2020): DAPT/TAPT MLM phases, then optionally a task method."""
from app.training.config import AutoRule
from app.training.registry import StrategySpec, register_strategy
from app.training.strategies.adaptive.config import AdaptiveSettings

SPEC = register_strategy(StrategySpec(
    name="adaptive", settings_model=AdaptiveSettings, entrypoint=f"{__name__}.strategy:train",
    paper="Gururangan et al. 2020, Don't Stop Pretraining",
    auto=AutoRule(learning_rate=1e-4, source="Gururangan et al. 2020 (TAPT: lr 1e-4 with warm-up), 3 epochs"),
    artifact_files=("encoder/config.json", "encoder/model.safetensors", "encoder/tokenizer.json"),
    reload="none", task_kinds=("masked_lm",)))

"""(IA)³ (Liu et al. 2022): learned rescaling vectors on keys, values and feed-forward activations."""
from app.training.config import AutoRule
from app.training.registry import StrategySpec, register_strategy
from app.training.strategies.ia3.config import IA3Settings

SPEC = register_strategy(StrategySpec(
    name="ia3", settings_model=IA3Settings, entrypoint=f"{__name__}.strategy:train",
    paper="Liu et al. 2022, (IA)³ / T-Few",
    auto=AutoRule(learning_rate=3e-3, max_epochs=10, source=(
        "Liu et al. 2022 (T-Few): lr 3e-3; epochs as LoRA's rule (small files need many steps)")),
    artifact_files=("adapter/adapter_model.safetensors", "adapter/adapter_config.json"), reload="peft",
    apply="app.training.peft_adapter:apply_adapter"))

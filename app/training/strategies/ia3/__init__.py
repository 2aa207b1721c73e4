"""(IA)³ (Liu et al. 2022): learned rescaling vectors on keys, values and feed-forward activations."""
from app.training.config import AutoRule
from app.training.registry import StrategySpec, register_strategy
from app.training.strategies.ia3.config import IA3Settings

SPEC = register_strategy(StrategySpec(
    name="ia3", settings_model=IA3Settings, entrypoint=f"{__name__}.strategy:train",
    paper="Liu et al. 2022, (IA)³ / T-Few",
    auto=AutoRule(learning_rate=1e-2, max_epochs=10, source=(
        "bench/peft.py on minilm-l6, 1,000 election tweets, seed 0: lr 1e-2 scored 92.9 test / 92.6 validation "
        "against 91.8 at T-Few's 3e-3 (Liu et al. 2022, 1,000 steps on T0-3B); epochs as LoRA's rule")),
    artifact_files=("adapter/adapter_model.safetensors", "adapter/adapter_config.json"), reload="peft",
    apply="app.training.peft_adapter:apply_adapter"))

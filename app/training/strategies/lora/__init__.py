"""LoRA (Hu et al. 2021): low-rank updates of chosen linear layers, a peft adapter as artifact."""
from app.training.config import AutoRule
from app.training.registry import StrategySpec, register_strategy
from app.training.strategies.lora.config import LoraSettings

SPEC = register_strategy(StrategySpec(
    name="lora", settings_model=LoraSettings, entrypoint=f"{__name__}.strategy:train",
    paper="Hu et al. 2021, LoRA", auto=AutoRule(learning_rate=1e-3, max_epochs=10, source=(
        "bare-script grid of issue 14 on minilm-l6, 1,000 examples: 10 epochs at 1e-3-2e-3 within 1 pt of full "
        "fine-tuning (Hu et al. 2021 train 30-80 epochs at 4e-4-5e-4 on GLUE)")),
    artifact_files=("adapter/adapter_model.safetensors", "adapter/adapter_config.json"), reload="peft",
    apply="app.training.peft_adapter:apply_adapter"))

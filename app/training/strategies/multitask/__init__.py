"""Multi-task pre-finetuning (Aghajanyan et al. 2021, Muppet): a shared encoder, one head per task, then
optionally a task method on the encoder."""
from app.training.config import AutoRule
from app.training.registry import StrategySpec, register_strategy
from app.training.strategies.multitask.config import MultitaskSettings

SPEC = register_strategy(StrategySpec(
    name="multitask", settings_model=MultitaskSettings, entrypoint=f"{__name__}.strategy:train",
    paper="Aghajanyan et al. 2021, Muppet: Massive Multi-task Representations with Pre-Finetuning",
    auto=AutoRule(learning_rate=5e-5, max_epochs=3, source=(
        "full fine-tuning's rate (Devlin et al. 2019: 5e-5) over the mixture, 3 epochs; Muppet pre-finetunes "
        "RoBERTa at 1e-5-3e-5 with batches of thousands, this service's batches are the rule's (up to 32)")),
    artifact_files=("encoder/config.json", "encoder/model.safetensors", "heads/heads.safetensors", "heads/tasks.json"),
    reload="none", task_kinds=("multitask",)))

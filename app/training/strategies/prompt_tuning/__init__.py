"""Prompt tuning (Lester et al. 2021): learned input embeddings and the head train, a peft adapter as artifact."""
from app.training.config import AutoRule
from app.training.registry import StrategySpec, register_strategy
from app.training.strategies.prompt_tuning.config import PromptTuningSettings

SPEC = register_strategy(StrategySpec(
    name="prompt_tuning", settings_model=PromptTuningSettings, entrypoint=f"{__name__}.strategy:train",
    paper="Lester et al. 2021, The Power of Scale for Parameter-Efficient Prompt Tuning",
    auto=AutoRule(learning_rate=3e-2, max_epochs=20, pooling="sentence", source=(
        "Lester et al. 2021 need a high rate (0.3 with Adafactor); PEFT's prompt-tuning guides use 3e-2 with AdamW "
        "and its sequence-classification notebooks 20 epochs. Checked on minilm-l6 (400 election tweets, 4 epochs, "
        "1 seed): validation accuracy 81% at 3e-2, 80% at 1e-1, 51% (chance) at 1e-3. The frozen encoder's [CLS] "
        "is a poor feature of a sentence-embedding base, so the head reads its mean there (pooling auto): "
        "bench/peft.py, 1,000 election tweets, seeds 0 and 1: 91.0 and 91.6 test against 88.75 and 88.55 over "
        "[CLS] (a virtual-token artifact has no merged export to lose)")),
    artifact_files=("adapter/adapter_model.safetensors", "adapter/adapter_config.json"), reload="peft",
    apply="app.training.peft_adapter:apply_adapter",
    task_kinds=("sequence_classification", "regression", "multi_label_classification"), task_note=(
        "prompt tuning prepends its virtual tokens to the input, so a per-token head's outputs no longer line up "
        "with the words (peft passes token labels unshifted); use prefix_tuning, which keeps them aligned, or lora")))

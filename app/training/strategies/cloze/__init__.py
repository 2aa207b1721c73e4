"""Cloze (PET, Schick & Schütze 2021): patterns and a verbalizer read through the masked-LM head, no new head."""
from app.training.config import AutoRule
from app.training.registry import StrategySpec, register_strategy
from app.training.strategies.cloze.config import ClozeSettings

SPEC = register_strategy(StrategySpec(
    name="cloze", settings_model=ClozeSettings, entrypoint=f"{__name__}.strategy:train",
    paper="Schick & Schütze 2021, PET (Exploiting Cloze Questions for Few Shot Text Classification)",
    auto=AutoRule(learning_rate=1e-4, max_epochs=30, target_steps=250, source=(
        "PET (Schick & Schütze 2021): 250 steps (lr 1e-5, batch 16, RoBERTa-large, whose MLM head is trained); "
        "minilm-l6's head transform starts untrained, and on election tweets (bench.bare_run, seed 0, ~250 steps) "
        "validation accuracy with 32 / 128 examples was 0.820 / 0.920 at 1e-4, 0.836 / 0.860 at 3e-5, "
        "0.834 / 0.828 at 1e-5 (0.790 at 3e-4 with 32): 1e-4, the best mean; up to 30 epochs on small files")),
    # the default layout (no cloze.peft); with peft: adapter/ (lora) or delta/delta.safetensors (bitfit)
    artifact_files=("mlm/model.safetensors", "mlm/config.json", "cloze/cloze.json"), reload="tuneforge",
    apply=f"{__name__}.apply:apply_cloze", tokenizer=f"{__name__}.apply:cloze_tokenizer",
    task_kinds=("sequence_classification",), task_note=(
        "cloze reads one [MASK] through the verbalizer, one word per label: it has no output for a number, a set "
        "of labels or a tag per token; use supervised, lora or another task method")))

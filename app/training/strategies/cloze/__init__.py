"""Cloze (PET, Schick & Schütze 2021): patterns and a verbalizer read through the masked-LM head, no new head."""
from app.training.config import AutoRule
from app.training.registry import StrategySpec, register_strategy
from app.training.strategies.cloze.config import ClozeSettings

SPEC = register_strategy(StrategySpec(
    name="cloze", settings_model=ClozeSettings, entrypoint=f"{__name__}.strategy:train",
    paper="Schick & Schütze 2021, PET (Exploiting Cloze Questions for Few Shot Text Classification)",
    auto=AutoRule(learning_rate=1e-5, max_epochs=30, target_steps=250, source=(
        "PET (Schick & Schütze 2021): lr 1e-5 for 250 steps (batch 16, RoBERTa-large); on minilm-l6 with 32 election "
        "tweets (bench.bare_run, seed 0, 240 steps) validation accuracy 0.834 at 1e-5, 0.820 at 1e-4, 0.790 at "
        "3e-4, so PET's rate stays; ~250 steps, up to 30 epochs on small files")),
    # the default layout (no cloze.peft); with peft: adapter/ (lora) or delta/delta.safetensors (bitfit)
    artifact_files=("mlm/model.safetensors", "mlm/config.json", "cloze/cloze.json"), reload="tuneforge",
    apply=f"{__name__}.apply:apply_cloze", tokenizer=f"{__name__}.apply:cloze_tokenizer"))

"""Text-to-text (Raffel et al. 2020, T5): a seq2seq or decoder LM generates the target text, so a label is
written out rather than scored by a new head; OpenAI chat files train decoders (loss on assistant turns)."""
from app.training.config import AutoRule
from app.training.data import GENERATION_TYPES
from app.training.registry import StrategySpec, register_strategy
from app.training.strategies.text_to_text.config import TextToTextSettings

SPEC = register_strategy(StrategySpec(
    name="text_to_text", settings_model=TextToTextSettings, entrypoint=f"{__name__}.strategy:train",
    paper="Raffel et al. 2020, T5 (Exploring the Limits of Transfer Learning with a Unified Text-to-Text Transformer)",
    auto=AutoRule(learning_rate=1e-4, max_epochs=5, source=(
        "full fine-tuning of a generative LM with AdamW: 1e-4 (Raffel et al. 2020 used Adafactor at 1e-3; the usual "
        "AdamW rate for T5/GPT-2 fine-tuning is 1e-4-3e-4), up to 5 epochs on small files")),
    artifact_files=(), reload="transformers",
    # single-label classification files train too (input -> the label's name): checked by the settings'
    # check_data, since listing them here would make this a classifier method other methods may nest
    task_kinds=GENERATION_TYPES, task_note="it generates text: text-to-text, chat or single-label classification rows",
    base_model_kinds=("seq2seq", "decoder")))

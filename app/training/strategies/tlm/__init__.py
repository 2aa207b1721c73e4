"""TLM (Yao et al. 2022, "NLP From Scratch Without Large-Scale Pretraining"): a random encoder trained on BM25-
retrieved general-corpus documents and the task jointly, then on the task alone; no pretrained weights."""
from app.training.config import AutoRule
from app.training.registry import StrategySpec, register_strategy
from app.training.strategies.tlm.config import TlmSettings

SPEC = register_strategy(StrategySpec(
    name="tlm", settings_model=TlmSettings, entrypoint=f"{__name__}.strategy:train",
    paper="Yao et al. 2022, NLP From Scratch Without Large-Scale Pretraining (TLM)",
    auto=AutoRule(learning_rate=5e-4, min_epochs=3, max_epochs=20, target_steps=500, source=(
        "Yao et al. 2022 and their code (yaoxingcheng/TLM): AdamW, linear decay with warm-up, every batch one "
        "optimizer step; a from-scratch encoder needs a pretraining-style rate (5e-4, as BERT-Small/Medium in "
        "Turc et al. 2019), not a fine-tuning one; epochs count passes over the task data, ~500 internal steps")),
    artifact_files=("model/model.safetensors", "model/config.json", "model/tokenizer.json", "retrieved.jsonl"),
    reload="transformers", task_kinds=("sequence_classification",),
    task_note="TLM trains single-label classification only, the task of the authors' joint loss"))

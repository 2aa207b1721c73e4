"""The baseline of bench/overhead.py: the same LoRA fine-tune in a bare Hugging Face `Trainer` script
(peft's LoraConfig, DataCollatorWithPadding), nothing of tuneforge involved; prints seconds and the
validation accuracy as JSON.

    python -m bench.hf_lora --train train.jsonl --valid valid.jsonl --spec '{"r": 8, "learning_rate": 2e-3, ...}'
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def run(train: Path, valid: Path, spec: dict) -> dict:
    import numpy as np
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    from bench.bare_run import minilm_path

    start = time.perf_counter()
    torch.manual_seed(spec["seed"])
    rows = {name: [json.loads(line) for line in open(path)] for name, path in (("train", train), ("valid", valid))}
    labels = sorted({r["label"] for r in rows["train"]})
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    encoded = {name: [{**tokenizer(r["text"], truncation=True, max_length=spec["max_length"]),
                       "labels": labels.index(r["label"])} for r in part] for name, part in rows.items()}
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=len(labels))
    model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=spec["r"], lora_alpha=spec["lora_alpha"],
                                             lora_dropout=spec["lora_dropout"], target_modules=spec["target_modules"]))
    args = TrainingArguments(output_dir=tempfile.mkdtemp(prefix="hf-lora-"), learning_rate=spec["learning_rate"],
                             num_train_epochs=spec["n_epochs"], per_device_train_batch_size=spec["batch_size"],
                             per_device_eval_batch_size=64, seed=spec["seed"], warmup_steps=spec["warmup_ratio"],  # a fraction: transformers 5
                             weight_decay=0.0, max_grad_norm=1.0, save_strategy="no", report_to=[],
                             logging_strategy="no", use_cpu=not torch.cuda.is_available())
    trainer = Trainer(model=model, args=args, train_dataset=encoded["train"],
                      data_collator=DataCollatorWithPadding(tokenizer))
    trained_at = time.perf_counter()
    trainer.train()
    training = time.perf_counter() - trained_at
    logits = trainer.predict(encoded["valid"]).predictions
    gold = np.array([e["labels"] for e in encoded["valid"]])
    model.save_pretrained(tempfile.mkdtemp(prefix="hf-lora-adapter-"))  # the service writes its artifact too
    return {"seconds": time.perf_counter() - start, "training_seconds": training,
            "valid_accuracy": float((np.argmax(logits, -1) == gold).mean())}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--valid", type=Path, required=True)
    parser.add_argument("--spec", required=True)
    cli = parser.parse_args()
    print(json.dumps(run(cli.train, cli.valid, json.loads(cli.spec))))

"""The reference of bench/peft.py: a bare Hugging Face `Trainer` full fine-tune of minilm-l6, nothing
of tuneforge involved, best of a small grid chosen on the validation split, scored on test.

    python -m bench.hf_reference --one '{"learning_rate": 5e-5, "n_epochs": 3, "seed": 0}' --data DIR
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# two points: a full fine-tune grid of more costs hours per seed on a 2-core CPU
GRID = [{"learning_rate": lr, "n_epochs": 5} for lr in (5e-5, 1e-4)]


def one(spec: dict, data: Path) -> dict:
    import numpy as np
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    from bench.bare_run import minilm_path

    torch.set_num_threads(spec.get("threads", 2))
    read = {name: [json.loads(line) for line in open(data / f"{name}.jsonl")] for name in ("train", "valid", "test")}
    labels = sorted({r["label"] for r in read["train"]})
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    encoded = {name: [{**tokenizer(r["text"], truncation=True, max_length=128), "labels": labels.index(r["label"])}
                      for r in rows] for name, rows in read.items()}
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=len(labels))
    args = TrainingArguments(output_dir=tempfile.mkdtemp(prefix="hf-ref-"), learning_rate=spec["learning_rate"],
                             num_train_epochs=spec["n_epochs"], per_device_train_batch_size=16, seed=spec["seed"],
                             warmup_steps=0.06, weight_decay=0.01, save_strategy="no", report_to=[],
                             logging_strategy="no", use_cpu=True)
    trainer = Trainer(model=model, args=args, train_dataset=encoded["train"],
                      data_collator=DataCollatorWithPadding(tokenizer))
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start

    def accuracy(name: str) -> tuple[float, float]:
        logits = trainer.predict(encoded[name]).predictions
        predicted, gold = np.argmax(logits, -1), np.array([e["labels"] for e in encoded[name]])
        f1s = []
        for k in range(len(labels)):
            tp = int(((predicted == k) & (gold == k)).sum())
            denominator = int((predicted == k).sum() + (gold == k).sum())
            f1s.append(2 * tp / denominator if denominator else 0.0)
        return float((predicted == gold).mean()), float(np.mean(f1s))

    valid_accuracy, _ = accuracy("valid")
    test_accuracy, test_f1 = accuracy("test")
    return {"seconds": seconds, "valid_accuracy": valid_accuracy, "test_accuracy": test_accuracy,
            "test_macro_f1": test_f1}


def mean_std(values: list[float]) -> str:
    """Percent, mean ± sample std over seeds."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * std:.1f}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--one", required=True)
    parser.add_argument("--data", type=Path, required=True)
    cli = parser.parse_args()
    print(json.dumps(one(json.loads(cli.one), cli.data)))

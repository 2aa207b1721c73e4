"""Issue 16's goal: with every setting on "auto", do TAPT → LoRA and DAPT+TAPT → LoRA beat LoRA alone?

Gururangan et al. 2020 ("Don't Stop Pretraining") report that task-adaptive (TAPT) and domain-adaptive
(DAPT, then TAPT) masked-LM pretraining each add points on the end task. Here: `minilm-l6`, 500 labelled
training examples of a real task, its 500 (tweets) or 300 (BBC News) validation examples given to the
job as a user would, the artifact scored in the same process on held-out test rows it never saw
(2,000 tweets / 700 articles). The DAPT corpus is the task's other texts, unlabelled (3,444 tweets /
725 articles). Rows, all through the strategies as a job runs them (bench/bare_run.py):
  lora        {"type": "lora"}                                   every setting "auto"
  tapt        {"type": "adaptive", "adaptive": {"tapt": true, "then": {"type": "lora"}}}
  tapt10      TAPT for 10 epochs (auto: 3), then LoRA on "auto"
  dapt+tapt   the same with "corpus_file" (DAPT on the corpus, then TAPT)

    python bench/adaptive_gain.py [--task tweets|bbc] [--rows lora,tapt,dapt+tapt] [--seeds 0,1,2]
                                  [--parallel 2] [--log FILE]
    python bench/adaptive_gain.py --report [--log FILE]
Each run is its own process (one torch thread when --parallel > 1); --resume skips runs the log holds.
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # bench/peft.py would shadow peft
sys.path.insert(0, str(HERE.parent))

from bench.data import TASKS, splits, write_jsonl  # noqa: E402

SIZES = {"tweets": (500, 500, 2000), "bbc": (500, 300, 700)}  # train, validation, test
CORPUS = 5000  # at most this many of the task's other texts form the DAPT corpus
ROWS: dict[str, dict] = {
    "lora": {"method": "lora", "settings": {}},
    "tapt": {"method": "adaptive", "settings": {"tapt": True, "then": {"type": "lora", "lora": {}}}},
    # TAPT for 10 epochs instead of auto's 3 (Gururangan et al. ran 100 on small task sets)
    "tapt10": {"method": "adaptive",
               "settings": {"tapt": True, "hyperparameters": {"n_epochs": 10}, "then": {"type": "lora", "lora": {}}}},
    "dapt+tapt": {"method": "adaptive",
                  "settings": {"tapt": True, "corpus_file": "corpus", "then": {"type": "lora", "lora": {}}}},
}


def prepare(task: str, root: Path) -> Path:
    """train/valid/test splits (fixed by seed 0, as bench/peft.py's) and the unlabelled DAPT corpus."""
    data = root / task
    if not (data / "corpus.jsonl").exists():
        data.mkdir(parents=True, exist_ok=True)
        for name, rows in splits(task, *SIZES[task], seed=0).items():
            write_jsonl(data / f"{name}.jsonl", rows)
        used = sum(SIZES[task])
        write_jsonl(data / "corpus.jsonl", [{"text": r["text"]} for r in TASKS[task](0)[used:used + CORPUS]])
    return data


def one(spec: dict, data: Path) -> dict:
    """Train one row with one seed and score its artifact on the test split (in this process)."""
    import torch

    from app.training.artifacts import load_classifier, predict
    from app.training.metrics import classification_metrics
    from bench.bare_run import bare_run, scoring_base

    torch.set_num_threads(spec.get("threads", 2))
    row = ROWS[spec["row"]]
    out = Path(tempfile.mkdtemp(prefix=f"adaptive-gain-{spec['row']}-"))
    files = {"corpus_file": data / "corpus.jsonl"} if "corpus_file" in row["settings"] else {}
    run = bare_run(row["method"], data / "train.jsonl", out, row["settings"], seed=spec["seed"],
                   validation=data / "valid.jsonl", input_files=files)
    model, tokenizer, labels = load_classifier(out, scoring_base(out))
    rows = [json.loads(line) for line in open(data / "test.jsonl")]
    index = {label: i for i, label in enumerate(labels)}
    predicted = [index[p["predicted"]] for p in predict(model, tokenizer, rows, labels)]
    scores = classification_metrics(predicted, [index[r["label"]] for r in rows], len(labels))
    return {**spec, "seconds": run["seconds"], "steps": run["steps"],
            "valid_accuracy": run["metrics"].get("eval_accuracy"), "test_accuracy": scores["eval_accuracy"],
            "test_macro_f1": scores["eval_macro_f1"],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def spawn(spec: dict, data: Path) -> dict:
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", json.dumps(spec), "--data", str(data)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"run {spec} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(log: Path) -> None:
    runs = [json.loads(line) for line in open(log)] if log.exists() else []
    print(f"{'task':<8} {'row':<10} {'n':>2} {'test accuracy':>16} {'macro-F1':>16} {'vs lora':>8} {'median s':>9}")
    for task in sorted({r["task"] for r in runs}):
        base = [r["test_accuracy"] for r in runs if r["task"] == task and r["row"] == "lora"]
        for name in ROWS:
            got = [r for r in runs if r["task"] == task and r["row"] == name]
            if not got:
                continue
            acc, f1 = [r["test_accuracy"] for r in got], [r["test_macro_f1"] for r in got]
            spread = lambda xs: f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs) if len(xs) > 1 else 0:.4f}"  # noqa: E731
            gap = f"{100 * (statistics.mean(acc) - statistics.mean(base)):+.2f}" if base else "-"
            print(f"{task:<8} {name:<10} {len(got):>2} {spread(acc):>16} {spread(f1):>16} {gap:>8} "
                  f"{statistics.median(r['seconds'] for r in got):>9.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--one")
    parser.add_argument("--data", type=Path)
    parser.add_argument("--task", default="tweets", choices=sorted(SIZES))
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--log", type=Path, default=Path("bench-adaptive-gain.jsonl"))
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(json.loads(args.one), args.data)))
        return
    if args.report:
        report(args.log)
        return
    data = prepare(args.task, Path(tempfile.gettempdir()) / "tuneforge-bench-adaptive-gain")
    done = {(r["task"], r["row"], r["seed"]) for r in map(json.loads, open(args.log))} if args.resume and args.log.exists() else set()
    specs = [{"task": args.task, "row": row, "seed": int(seed), "threads": 1 if args.parallel > 1 else 2}
             for seed in args.seeds.split(",") for row in args.rows.split(",")
             if (args.task, row, int(seed)) not in done]
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        for result in pool.map(lambda spec: spawn(spec, data), specs):
            with open(args.log, "a") as log:
                log.write(json.dumps(result) + "\n")
            print(json.dumps(result), flush=True)
    report(args.log)


if __name__ == "__main__":
    main()

"""Parameter-efficient methods against full fine-tuning on one real task: "auto" vs the best of a grid.

Every method trains `minilm-l6` on the same 1,000 labelled examples (election tweets by default: a
balanced binary short-text task; `--task bbc` for BBC News, 5 topics) with 3 seeds, in a fresh
process each (so peak RSS is that run's). The job's validation file (500 other examples) is given, as
a user would; the artifact is scored on 2,000 held-out test examples it never saw. Columns:
  auto   every hyper-parameter left on "auto" (what a user gets by default)
  fast   (--fast) "auto" with the fast preset (the rule's minimum epochs): what the time it saves costs
  grid   (--grid) each point of a small per-method grid, to compare "auto" against; the report adds each
         method's best grid point chosen on validation accuracy (never on test)
Reference: a bare Hugging Face `Trainer` full fine-tune (bench/hf_reference.py), best of its grid.
Printed per method: trainable-parameter fraction, artifact bytes / base bytes, peak RSS, wall time,
test accuracy and macro-F1 (mean ± std over seeds), and the gap of "auto" to the reference.

    python bench/peft.py [--methods lora,bitfit|all] [--seeds 0,1,2] [--fast] [--grid] [--task tweets] [--log FILE]
    python bench/peft.py --report [--log FILE]          # the table from the runs logged so far
    python bench/peft.py --one '{"method": "lora", "seed": 0}' --data DIR   # one run, in this process
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.data import splits, write_jsonl  # noqa: E402
from bench.hf_reference import GRID as REFERENCE_GRID, mean_std  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["supervised", "lora", "bitfit", "ia3", "adapter"]  # the ones issue 14 judges, the default
OTHER_METHODS = ["partial", "said", "diff_pruning", "prompt_tuning", "prefix_tuning"]  # with --methods all
# The grid each method's "grid" column is the best of (chosen on validation accuracy, mean over seeds).
GRIDS: dict[str, list[dict]] = {
    "supervised": [{"learning_rate": lr, "n_epochs": e} for lr in (5e-5, 1e-4) for e in (3, 10)],
    "lora": [{"learning_rate": lr, "n_epochs": 10} for lr in (5e-4, 1e-3, 2e-3)],
    "bitfit": [{"learning_rate": lr, "n_epochs": 10} for lr in (1e-3, 3e-3, 1e-2)],
    "ia3": [{"learning_rate": lr, "n_epochs": 10} for lr in (3e-3, 1e-2, 3e-2)],
    "adapter": [{"learning_rate": lr, "n_epochs": 10} for lr in (3e-4, 1e-3, 3e-3)],
}


def one(spec: dict, data: Path) -> dict:
    """Train one configuration and score its artifact on the test split (runs in its own process)."""
    import torch

    from app.training.artifacts import load_classifier, predict, read_manifest
    from app.training.metrics import classification_metrics
    from bench.bare_run import bare_run, minilm_path, scoring_base

    torch.set_num_threads(spec.get("threads", 2))
    out = Path(tempfile.mkdtemp(prefix=f"peft-{spec['method']}-"))
    settings = {**spec.get("settings", {}), "hyperparameters": spec.get("hyperparameters", {})}
    run = bare_run(spec["method"], data / "train.jsonl", out, settings, seed=spec["seed"],
                   validation=data / "valid.jsonl")
    manifest = read_manifest(out)
    model, tokenizer, labels = load_classifier(out, scoring_base(out))  # fewshot's cloze after TAPT is adaptive
    rows = [json.loads(line) for line in open(data / "test.jsonl")]
    predicted = [p["predicted"] for p in predict(model, tokenizer, rows, labels)]
    index = {label: i for i, label in enumerate(labels)}
    scores = classification_metrics([index[p] for p in predicted], [index[r["label"]] for r in rows], len(labels))
    weights = sum(f["bytes"] for name, f in manifest["files"].items() if not name.startswith("eval/"))
    base = sum(p.stat().st_size for p in minilm_path().iterdir() if p.suffix == ".safetensors")
    params = manifest.get("parameters", {})
    return {"seconds": run["seconds"], "steps": run["steps"], "peak_rss_mb": resource.getrusage(
                resource.RUSAGE_SELF).ru_maxrss / 1024, "test_accuracy": scores["eval_accuracy"],
            "test_macro_f1": scores["eval_macro_f1"], "valid_accuracy": run["metrics"].get("eval_accuracy"),
            "trainable_fraction": params.get("trainable", 0) / max(1, params.get("total", 1)),
            "artifact_fraction": weights / base, "hyperparameters": manifest["hyperparameters"]}


def _minilm() -> Path:
    from bench.bare_run import minilm_path

    return minilm_path()


def spawn(module: str, spec: dict, data: Path) -> dict:
    out = subprocess.run([sys.executable, "-m", module, "--one", json.dumps(spec), "--data", str(data)],
                         cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"run {spec} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def columns(methods: list[str], grid: bool, reference: str = "all", fast: bool = False) -> list[tuple[str, str, dict]]:
    """(column, method, hyper-parameters): the reference grid (or the points of it named by
    `reference`, e.g. "1" for the second), each method on auto, the fast preset, then the grids."""
    points = range(len(REFERENCE_GRID)) if reference == "all" else [int(i) for i in reference.split(",") if i]
    cols = [(f"reference {json.dumps(REFERENCE_GRID[i])}", "hf_reference", REFERENCE_GRID[i]) for i in points]
    cols += [(f"{m} auto", m, {}) for m in methods]
    if fast:
        cols += [(f"{m} fast", m, {"preset": "fast"}) for m in methods]
    if grid:
        cols += [(f"{m} {json.dumps(h)}", m, h) for m in methods for h in GRIDS.get(m, [])]
    return cols


def run_all(args: argparse.Namespace) -> None:
    """Seeds outermost, so an interrupted run still has every column for the seeds it finished.

    With --parallel N, N runs go at once with one thread each: on a small CPU two one-thread runs
    finish about twice as fast as one two-thread run (small matrices scale badly across threads)."""
    data = Path(tempfile.mkdtemp(prefix="peft-data-"))
    for name, rows in splits(args.task, args.n_train, 500, 2000).items():
        write_jsonl(data / f"{name}.jsonl", rows)
    threads = 1 if args.parallel > 1 else 2
    methods = METHODS + OTHER_METHODS if args.methods == "all" else args.methods.split(",")
    runs = [(seed, column, method, hyper) for seed in [int(s) for s in args.seeds.split(",")]
            for column, method, hyper in columns(methods, args.grid, args.reference, args.fast)]
    if args.resume and args.log.exists():  # an interrupted benchmark goes on where it stopped
        done = {(r["column"], r["seed"]) for r in map(json.loads, open(args.log)) if r["task"] == args.task}
        runs = [run for run in runs if (run[1], run[0]) not in done]
    lock = threading.Lock()

    def go(seed: int, column: str, method: str, hyper: dict) -> None:
        if method == "hf_reference":
            result = spawn("bench.hf_reference", {**hyper, "seed": seed, "threads": threads}, data)
        else:
            result = spawn("bench.peft", {"method": method, "hyperparameters": hyper, "seed": seed,
                                          "threads": threads}, data)
        with lock, open(args.log, "a") as log:
            log.write(json.dumps({"task": args.task, "n_train": args.n_train, "column": column, "method": method,
                                  "seed": seed, "time": time.time(), "threads": threads, **result}) + "\n")

    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        for future in [pool.submit(go, *run) for run in runs]:
            future.result()
    report(args.log, args.task)


def best_grid_points(runs: dict[str, list[dict]]) -> dict[str, tuple[str, list[dict]]]:
    """Per method, the column with the best mean validation accuracy among its grid points and its
    "auto" (itself a point of the grid); one-seed exploration runs, runs of earlier code and the fast preset
    do not compete."""
    best: dict[str, tuple[str, list[dict]]] = {}
    for column, rs in runs.items():
        method = rs[0]["method"]
        if method == "hf_reference" or column == f"{method} fast" or column.endswith(("(exploration)", "(earlier code)")):
            continue
        score = statistics.mean(r["valid_accuracy"] for r in rs)
        if method not in best or score > statistics.mean(r["valid_accuracy"] for r in best[method][1]):
            best[method] = (column, rs)
    return best


def report(path: Path, task: str) -> None:
    """The table, from every run logged for `task` (mean ± std over the seeds each column has)."""
    runs: dict[str, list[dict]] = {}
    for line in open(path):
        record = json.loads(line)
        if record["task"] == task:
            runs.setdefault(record["column"], []).append(record)
    references = {c: r for c, r in runs.items() if c.startswith("reference")}
    reference = max(references.items(), key=lambda cr: statistics.mean(r["valid_accuracy"] for r in cr[1]),
                    default=None)
    print(f"\n{task}: test accuracy / macro-F1 on 2,000 held-out examples, mean ± std over seeds; "
          "selection on 500 validation examples")
    if reference:
        ref_acc = statistics.mean(r["test_accuracy"] for r in reference[1])
        print(f"reference = {reference[0]} (best validation of {len(references)} bare HF Trainer full fine-tunes)")
    print(f"{'column':44} {'seeds':>5} {'test acc':>12} {'macro-F1':>12} {'Δ ref pt':>8} {'median s':>8} "
          f"{'trainable':>9} {'artifact':>9} {'RSS MB':>7}")
    for column, rs in runs.items():
        acc = [r["test_accuracy"] for r in rs]
        gap = f"{100 * (statistics.mean(acc) - ref_acc):+.1f}" if reference else "-"
        trainable = f"{100 * rs[0]['trainable_fraction']:.2f}%" if "trainable_fraction" in rs[0] else "100%"
        artifact = f"{100 * rs[0]['artifact_fraction']:.2f}%" if "artifact_fraction" in rs[0] else "-"
        rss = f"{max(r.get('peak_rss_mb', 0) for r in rs):.0f}"
        print(f"{column:44} {len(rs):>5} {mean_std(acc):>12} {mean_std([r['test_macro_f1'] for r in rs]):>12} "
              f"{gap:>8} {statistics.median(r['seconds'] for r in rs):>8.0f} {trainable:>9} {artifact:>9} {rss:>7}")
    for method, (column, rs) in best_grid_points(runs).items():
        acc = [r["test_accuracy"] for r in rs]
        gap = f"{100 * (statistics.mean(acc) - ref_acc):+.1f}" if reference else "-"
        print(f"  {method} grid best on validation: {column} -> test {mean_std(acc)} ({gap} pt)")
    base_mb = sum(p.stat().st_size for p in _minilm().iterdir() if p.suffix == ".safetensors") / 1e6
    for column, rs in runs.items():
        if column.endswith(" auto") and "artifact_fraction" in rs[0]:
            each = rs[0]["artifact_fraction"] * base_mb
            print(f"  100 {column.removesuffix(' auto')} jobs on disk: one base {base_mb:.1f} MB + 100 × {each:.2f} MB = "
                  f"{base_mb + 100 * each:.1f} MB (100 full copies: {100 * base_mb / 1e3:.1f} GB)")
    for column, rs in runs.items():
        if column.endswith(" auto"):
            hp = rs[0]["hyperparameters"]
            print(f"  {column} resolved to: n_epochs {hp['n_epochs']}, batch {hp['batch_size']}, "
                  f"lr {hp['learning_rate']:g}, warm-up {hp['warmup_ratio']}, {hp.get('lr_scheduler', 'linear')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--one")
    parser.add_argument("--data", type=Path)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--task", default="tweets")
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=1, help="runs at once, one thread each when > 1")
    parser.add_argument("--reference", default="all",
                        help='which reference grid points to run: "all", or indices such as "1" ("" for none)')
    parser.add_argument("--resume", action="store_true", help="skip the runs --log already holds")
    parser.add_argument("--fast", action="store_true", help='also run every method with the "fast" preset')
    parser.add_argument("--grid", action="store_true", help="also run every method's grid (hours on a CPU)")
    parser.add_argument("--report", action="store_true", help="print the table from --log and exit")
    parser.add_argument("--log", type=Path, default=Path("bench-peft.jsonl"))
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(json.loads(args.one), args.data)))
    elif args.report:
        report(args.log, args.task)
    else:
        run_all(args)


if __name__ == "__main__":
    main()

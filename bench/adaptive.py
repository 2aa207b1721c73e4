"""Does adaptive pretraining help? LoRA on a 500-article subset of BBC News with and without
TAPT / DAPT+TAPT first, across MLM masking options, all through the `adaptive` strategy on the
real minilm-l6, side by side in one run. Prints held-out accuracy and macro-F1 (mean ± std over
seeds) and each MLM phase's held-out MLM loss before → after.

    python -m bench.adaptive [--seeds 1] [--full] [--max-length 64] [--corpus 1000] [--variants 0,1,2]
                              [--head-warmup auto|0|N] [--encoder-lr-ratio 1.0] [--quick]

"LoRA MLM" rows train the MLM phases parameter-efficiently (adaptive.peft "lora"): the artifact column
shows what each run ships (full DAPT: a whole encoder copy; LoRA MLM: base id + adapter). --quick
checks the script in about 4 minutes on 2 cores: 64 train / 32 validation articles, a 64-article corpus,
max_length 32, 1 epoch everywhere and 2 head warm-up steps, on the no-adaptation and both DAPT rows.

The default grid is sized for a 2-core CPU (about 15 minutes); --full adds PMI masking and the
remaining mask-rate × replacement combinations, and 3 seeds are what the comparison deserves.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]  # run as a script: bench/peft.py
sys.path.insert(0, str(HERE.parent))  # would shadow the peft package the LoRA runs import

from bench.bare_run import bare_run  # noqa: E402
from bench.data import load_bbc_news  # noqa: E402

QUICK = [
    ("lora, no adaptation", None),
    ("TAPT 0.15 80/10/10 token", {"tapt": True, "mlm": {"mask_rate": 0.15}}),
    ("TAPT 0.40 80/10/10 token", {"tapt": True, "mlm": {"mask_rate": 0.40}}),
    ("TAPT 0.40 mask-only token", {"tapt": True, "mlm": {"mask_rate": 0.40, "replacement": "mask_only"}}),
    ("TAPT 0.40 80/10/10 span", {"tapt": True, "mlm": {"mask_rate": 0.40, "unit": "span"}}),
    ("DAPT+TAPT 0.15 80/10/10 token", {"dapt": True, "tapt": True, "mlm": {"mask_rate": 0.15}}),
    ("DAPT+TAPT 0.15 token, LoRA MLM", {"dapt": True, "tapt": True, "mlm": {"mask_rate": 0.15}, "peft": "lora"}),
]
QUICK_ROWS = (0, 5, 6)  # --quick: no adaptation, full DAPT+TAPT, parameter-efficient DAPT+TAPT
FULL = [
    ("TAPT 0.15 mask-only token", {"tapt": True, "mlm": {"mask_rate": 0.15, "replacement": "mask_only"}}),
    ("TAPT 0.15 80/10/10 span", {"tapt": True, "mlm": {"mask_rate": 0.15, "unit": "span"}}),
    ("TAPT 0.15 80/10/10 pmi", {"tapt": True, "mlm": {"mask_rate": 0.15, "unit": "pmi", "pmi_min_count": 3}}),
    ("TAPT 0.40 80/10/10 pmi", {"tapt": True, "mlm": {"mask_rate": 0.40, "unit": "pmi", "pmi_min_count": 3}}),
]


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--corpus", type=int, default=1000, help="DAPT corpus size (articles outside train/valid)")
    parser.add_argument("--variants", help="comma-separated row numbers of the grid to run (default: all)")
    parser.add_argument("--head-warmup", default="auto", help="adaptive head_warmup: auto, 0 (off) or steps")
    parser.add_argument("--encoder-lr-ratio", type=float, default=1.0, help="adaptive encoder_lr_ratio")
    parser.add_argument("--quick", action="store_true", help="a tiny run that checks the script (see above)")
    args = parser.parse_args()
    n_train, n_valid, epochs = (64, 32, 1) if args.quick else (500, 300, 3)
    if args.quick:
        args.corpus, args.max_length, args.variants = 64, 32, args.variants or ",".join(map(str, QUICK_ROWS))
        args.head_warmup = "2" if args.head_warmup == "auto" else args.head_warmup

    rows = load_bbc_news(seed=0)
    root = Path(tempfile.mkdtemp(prefix="bench-adaptive-"))
    train = write(root / "train.jsonl", rows[:n_train])
    valid = write(root / "valid.jsonl", rows[500:500 + n_valid])
    corpus = write(root / "corpus.jsonl", [{"text": r["text"]} for r in rows[800:800 + args.corpus]])
    schedule = {"max_length": args.max_length, "batch_size": 16}
    lora = {"r": 8, "hyperparameters": {**schedule, "n_epochs": epochs}}
    print(f"BBC News: {n_train} train / {n_valid} validation articles, DAPT corpus {args.corpus} other articles; "
          f"minilm-l6, max_length {args.max_length}, LoRA r=8 {epochs} epochs; MLM phases 1 epoch, lr 1e-4, "
          f"head_warmup {args.head_warmup}, encoder_lr_ratio {args.encoder_lr_ratio}; seeds {args.seeds}")
    print(f"{'variant':<32} {'accuracy':>15} {'macro-F1':>15} {'MLM loss before → after':>26} {'s/run':>7} "
          f"{'artifact MB':>11}")
    grid = list(enumerate(QUICK + (FULL if args.full else [])))
    if args.variants:
        grid = [grid[int(i)] for i in args.variants.split(",")]
    for index, (name, adaptive) in grid:
        accuracy, f1, mlm, seconds, sizes = [], [], [], [], []
        for seed in range(args.seeds):
            out = root / f"variant{index}-seed{seed}"
            if adaptive is None:
                result = bare_run("lora", train, out, lora, seed, validation=valid)
            else:
                warmup = args.head_warmup if args.head_warmup == "auto" else int(args.head_warmup)
                settings = {"tapt": adaptive["tapt"], "mlm": adaptive["mlm"], "head_warmup": warmup,
                            "encoder_lr_ratio": args.encoder_lr_ratio,
                            "hyperparameters": {**schedule, "n_epochs": 1, "learning_rate": 1e-4},
                            "then": {"type": "lora", "lora": lora}}
                if adaptive.get("peft"):
                    settings["peft"] = adaptive["peft"]
                files = {}
                if adaptive.get("dapt"):
                    settings["corpus_file"], files = "corpus", {"corpus_file": corpus}
                result = bare_run("adaptive", train, out, settings, seed, validation=valid, input_files=files)
                phases = json.loads((out / "manifest.json").read_text())["adaptive"]["phases"]
                mlm.append(" ".join(f"{p['before']['mlm_loss']:.2f}→{p['after']['mlm_loss']:.2f}" for p in phases))
            accuracy.append(result["metrics"]["eval_accuracy"])
            f1.append(result["metrics"]["eval_macro_f1"])
            seconds.append(result["seconds"])
            sizes.append(sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20)
        spread = lambda xs: f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs) if len(xs) > 1 else 0:.3f}"  # noqa: E731
        print(f"{name:<32} {spread(accuracy):>15} {spread(f1):>15} {(mlm[0] if mlm else '-'):>26} "
              f"{statistics.median(seconds):>7.0f} {statistics.median(sizes):>11.2f}", flush=True)


if __name__ == "__main__":
    main()

"""Intermediate-task chains (STILTs, Phang et al. 2018) on real data: a topic task, then the target task,
against the target task alone.

Intermediate: BBC News (5 topics, business/entertainment/politics/sport/tech), `--n-inter` articles,
full fine-tuning of `minilm-l6` (2 epochs). Its encoder is materialized exactly as the service does
(app.training.lineage.materialize_encoder: head dropped) and the target method trains a new head on
it. Target: election tweets (author: Clinton / Trump), `--n-train` labelled examples (a small target,
where STILTs reports its gains), 300 validation, 1,000 test examples the model never saw. Both arms
use the same target hyper-parameters (the method's "auto" rule) and seeds; each run is its own process.

    python -m bench.chains [--seeds 0,1,2] [--methods supervised,lora] [--n-train 200] [--log FILE]
    python -m bench.chains --report [--log FILE]

Measured (bench/results/chains.jsonl, 3 seeds, 2 shared cores): target alone 91.1 ± 0.5 test accuracy,
BBC (500) → target 88.9 ± 0.2 (-2.2 pt; validation 90.1 vs 90.9 alone): a topic task does not help an
authorship task here; STILTs (Phang et al. 2018) also reports intermediate tasks that hurt some targets.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench.data import splits, write_jsonl
from bench.hf_reference import mean_std
from bench.peft import spawn

LOG = Path(__file__).resolve().parent / "results" / "chains.jsonl"
INTER = {"hyperparameters": {"n_epochs": 2, "batch_size": 16}}


def _score(out: Path, base: Path, test: Path) -> dict:
    from app.training.artifacts import load_classifier, predict
    from app.training.metrics import classification_metrics

    model, tokenizer, labels = load_classifier(out, base)
    rows = [json.loads(line) for line in open(test)]
    index = {label: i for i, label in enumerate(labels)}
    predicted = [index[p["predicted"]] for p in predict(model, tokenizer, rows, labels)]
    scores = classification_metrics(predicted, [index[r["label"]] for r in rows], len(labels))
    return {"test_accuracy": scores["eval_accuracy"], "test_macro_f1": scores["eval_macro_f1"]}


def one(spec: dict, data: Path) -> dict:
    """One arm for one seed (in its own process): [intermediate job → materialized encoder →] target job."""
    import torch

    from app.training.lineage import materialize_encoder
    from bench.bare_run import bare_run, minilm_path

    torch.set_num_threads(spec.get("threads", 2))
    seed, base, record = spec["seed"], minilm_path(), {}
    start = time.perf_counter()
    if spec["arm"] == "chain":
        inter = Path(tempfile.mkdtemp(prefix="chain-inter-"))
        run = bare_run("supervised", data / "inter-train.jsonl", inter, INTER, seed=seed,
                       validation=data / "inter-valid.jsonl")
        base = Path(tempfile.mkdtemp(prefix="chain-encoder-")) / "encoder"
        materialize_encoder(inter, minilm_path(), base)
        record |= {"inter_valid_accuracy": run["metrics"].get("eval_accuracy"), "inter_seconds": run["seconds"]}
    out = Path(tempfile.mkdtemp(prefix="chain-target-"))
    run = bare_run(spec["method"], data / "train.jsonl", out, {}, seed=seed, base=base,
                   validation=data / "valid.jsonl")
    return {**record, **_score(out, base, data / "test.jsonl"), "valid_accuracy": run["metrics"].get("eval_accuracy"),
            "target_seconds": run["seconds"], "seconds": time.perf_counter() - start}


def run_all(args: argparse.Namespace) -> None:
    data = Path(tempfile.mkdtemp(prefix="chains-data-"))
    for name, rows in splits("tweets", args.n_train, 300, 1000).items():
        write_jsonl(data / f"{name}.jsonl", rows)
    for name, rows in splits("bbc", args.n_inter, 200, 0).items():
        write_jsonl(data / f"inter-{name}.jsonl", rows)
    for seed in (int(s) for s in args.seeds.split(",")):
        for method in args.methods.split(","):
            for arm in ("alone", "chain"):
                result = spawn("bench.chains", {"arm": arm, "method": method, "seed": seed,
                                                "threads": args.threads}, data)
                with open(args.log, "a") as log:
                    log.write(json.dumps({"arm": arm, "method": method, "seed": seed, "n_train": args.n_train,
                                          "n_inter": args.n_inter, "time": time.time(), **result}) + "\n")
                print(f"seed {seed} {method} {arm}: test accuracy {result['test_accuracy']:.3f}", flush=True)
    report(args.log)


def report(path: Path) -> None:
    """Test accuracy per (method, arm), mean ± std over seeds, and the chain's gain over the target alone."""
    runs: dict[tuple[str, str], list[dict]] = {}
    for record in map(json.loads, open(path)):
        runs.setdefault((record["method"], record["arm"]), []).append(record)
    print("\nelection tweets (author), test accuracy / macro-F1 on 1,000 held-out tweets, mean ± std over seeds")
    print(f"{'method':12} {'arm':28} {'seeds':>5} {'test acc':>12} {'macro-F1':>12} {'Δ pt':>6} {'median s':>8}")
    for (method, arm), rs in sorted(runs.items()):
        acc = [r["test_accuracy"] for r in rs]
        alone = runs.get((method, "alone"))
        gain = f"{100 * (statistics.mean(acc) - statistics.mean(r['test_accuracy'] for r in alone)):+.1f}" \
            if alone and arm == "chain" else "-"
        label = "target alone" if arm == "alone" else f"BBC ({rs[0]['n_inter']}) → target"
        print(f"{method:12} {label:28} {len(rs):>5} {mean_std(acc):>12} "
              f"{mean_std([r['test_macro_f1'] for r in rs]):>12} {gain:>6} "
              f"{statistics.median(r['seconds'] for r in rs):>8.0f}")
    inter = [r["inter_valid_accuracy"] for rs in runs.values() for r in rs if r.get("inter_valid_accuracy")]
    if inter:
        print(f"  intermediate task (BBC topics) validation accuracy: {mean_std(inter)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--one")
    parser.add_argument("--data", type=Path)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default="supervised")
    parser.add_argument("--n-train", type=int, default=200)
    parser.add_argument("--n-inter", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--log", type=Path, default=LOG)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(json.loads(args.one), args.data)))
    elif args.report:
        report(args.log)
    else:
        run_all(args)


if __name__ == "__main__":
    main()

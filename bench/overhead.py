"""Service overhead: the same LoRA fine-tune of minilm-l6 on real BBC News, through the service vs. bare.

(a) a bare Hugging Face `Trainer` script with peft's LoRA (`bench.hf_lora`, a fresh process): the
    reference the service must beat (goal: service / Trainer <= 0.85 at the same validation accuracy);
(b) the service: api + worker processes on the local PostgreSQL/Redis, submit over HTTP, poll until
    succeeded with artifacts written (evaluation on the same validation rows included, as in (a));
(c) a bare tuneforge script (`bench.bare_run`): the service's own training code without the service.
All are wall times of a fresh process's work (imports, model load and the final evaluation included).
Also prints submit-to-first-step latency and the LoRA and BitFit artifact sizes as a fraction of the
base model's size. The same settings everywhere: r=8, alpha 16, dropout 0.1 on query/value, LoRA's
auto learning rate, warm-up 6%, linear decay, clipping at 1.0, 1 epoch.

    python bench/overhead.py [--n 2000] [--max-length 128] [--repeats 1]
    python bench/overhead.py --quick       # 200 articles at max_length 64: proves it runs (~2 min)
"""
from __future__ import annotations

import argparse
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bare_run import minilm_path  # noqa: E402
from bench.data import load_bbc_news, write_jsonl  # noqa: E402
from bench.deployment import Deployment  # noqa: E402
from tests.harness import ROOT  # noqa: E402



def _last_json(args: list[str]) -> tuple[float, dict]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, check=True, capture_output=True, text=True)
    return time.perf_counter() - start, json.loads(out.stdout.strip().splitlines()[-1])


def bare(train: Path, valid: Path, settings: dict, work: Path) -> tuple[float, float]:
    """(process wall time, seconds inside the training call)."""
    wall, out = _last_json(["bench.bare_run", "--method", "lora", "--train", str(train), "--validation", str(valid),
                            "--out", str(work / f"bare-{secrets.token_hex(3)}"), "--settings", json.dumps(settings)])
    return wall, out["seconds"]


def hf_trainer(train: Path, valid: Path, settings: dict) -> tuple[float, float, float]:
    """(process wall time, seconds inside trainer.train(), validation accuracy) of the Trainer script."""
    from app.training.registry import get_strategy

    hyper = settings["hyperparameters"]
    spec = {"r": settings["r"], "lora_alpha": 16, "lora_dropout": 0.1, "target_modules": ["query", "value"],
            "learning_rate": get_strategy("lora").auto.learning_rate, "n_epochs": hyper["n_epochs"],
            "batch_size": hyper["batch_size"], "max_length": hyper["max_length"], "warmup_ratio": 0.06, "seed": 0}
    wall, out = _last_json(["bench.hf_lora", "--train", str(train), "--valid", str(valid), "--spec", json.dumps(spec)])
    return wall, out["training_seconds"], out["valid_accuracy"]


class Service(Deployment):
    """One api + one worker, one tenant."""

    def __init__(self, work: Path):
        super().__init__(work, workers=1)
        self.headers = self.tenant_headers("bench")

    def run(self, train: Path, method: dict, valid: Path | None = None) -> tuple[float, float, list[dict], dict]:
        """(submit->succeeded seconds, submit->first step seconds, artifacts, the job's metrics)."""
        with httpx.Client(base_url=f"{self.url}/v1", headers=self.headers, timeout=60) as http:
            def upload(path: Path) -> str:
                return http.post("/files", files={"file": (path.name, path.read_bytes())},
                                 data={"purpose": "fine-tune"}).json()["id"]
            file_id, valid_id = upload(train), upload(valid) if valid is not None else None
            start = time.perf_counter()
            job = http.post("/fine_tuning/jobs", json={"model": "minilm-l6", "training_file": file_id, "seed": 0,
                                                       "validation_file": valid_id, "method": method}).json()
            first_step = None
            while True:
                if first_step is None:
                    events = http.get(f"/fine_tuning/jobs/{job['id']}/events", params={"limit": 100}).json()["data"]
                    if any(e["type"] == "metrics" for e in events):
                        first_step = time.perf_counter() - start
                status = http.get(f"/fine_tuning/jobs/{job['id']}").json()
                if status["status"] in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(0.1)
            total = time.perf_counter() - start
            if status["status"] != "succeeded":
                raise SystemExit(f"service job ended {status['status']}: {status['error']}")
            artifacts = http.get(f"/fine_tuning/jobs/{job['id']}/artifacts").json()["data"]
            return total, first_step or total, artifacts, status["metrics"] or {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="BBC News training examples")
    parser.add_argument("--n-valid", type=int, default=200, help="BBC News validation examples (after the training ones)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="200 articles, 100 for validation, max_length 64")
    args = parser.parse_args()
    if args.quick:
        args.n, args.n_valid, args.max_length = 200, 100, 64
    work = Path(tempfile.mkdtemp(prefix="tuneforge-bench-"))
    rows = load_bbc_news(seed=0)
    train = write_jsonl(work / "train.jsonl", rows[: args.n])
    valid = write_jsonl(work / "valid.jsonl", rows[args.n: args.n + args.n_valid])
    hyper = {"n_epochs": 1, "batch_size": args.batch_size, "max_length": args.max_length}
    settings = {"r": 8, "hyperparameters": hyper}
    service = Service(work)
    hf_times, hf_train_times, hf_accuracy, bare_times, train_times = [], [], [], [], []
    service_times, first_steps, service_accuracy = [], [], []
    try:
        for _ in range(args.repeats):  # interleaved so drift on a shared machine hits all alike
            wall, inside, accuracy = hf_trainer(train, valid, settings)
            hf_times.append(wall)
            hf_train_times.append(inside)
            hf_accuracy.append(accuracy)
            total, first, lora_artifacts, metrics = service.run(train, {"type": "lora", "lora": settings}, valid)
            service_times.append(total)
            first_steps.append(first)
            service_accuracy.append(metrics.get("eval_accuracy", float("nan")))
            wall, inside = bare(train, valid, settings, work)
            bare_times.append(wall)
            train_times.append(inside)
        small = write_jsonl(work / "small.jsonl", rows[:64])
        _, _, bitfit_artifacts, _ = service.run(small, {"type": "bitfit", "bitfit": {"hyperparameters": {
            "n_epochs": 1, "batch_size": 16, "max_length": 64}}})
    finally:
        service.close()
    base_bytes = sum(f.stat().st_size for f in minilm_path().rglob("*") if f.is_file())

    def weights_bytes(artifacts: list[dict], prefix: str) -> int:
        return sum(a["bytes"] for a in artifacts if a["name"].startswith(prefix))

    median = statistics.median
    a, b = median(hf_times), median(service_times)
    print(f"\nLoRA (r=8) fine-tune of minilm-l6 on {args.n} BBC News articles ({args.n_valid} for validation), "
          f"1 epoch, batch {args.batch_size}, max_length {args.max_length}, {args.repeats} run(s) each, medians:")
    print(f"{'measure':<48}{'value':>14}")
    print(f"{'(a) HF Trainer script wall time':<48}{a:>13.1f}s")
    print(f"{'    of which trainer.train()':<48}{median(hf_train_times):>13.1f}s")
    print(f"{'    validation accuracy':<48}{median(hf_accuracy):>14.4f}")
    print(f"{'(b) through the service, submit->succeeded':<48}{b:>13.1f}s")
    print(f"{'    validation accuracy':<48}{median(service_accuracy):>14.4f}")
    print(f"{'    submit -> first training step':<48}{median(first_steps):>13.1f}s")
    print(f"{'(c) bare tuneforge script wall time':<48}{median(bare_times):>13.1f}s")
    print(f"{'    of which the training call itself':<48}{median(train_times):>13.1f}s")
    lora_bytes, bitfit_bytes = weights_bytes(lora_artifacts, "adapter/"), weights_bytes(bitfit_artifacts, "delta/")
    print(f"{'LoRA adapter bytes / base model bytes':<48}{lora_bytes / base_bytes:>14.4f}  ({lora_bytes:,} / {base_bytes:,})")
    print(f"{'BitFit delta bytes / base model bytes':<48}{bitfit_bytes / base_bytes:>14.4f}  ({bitfit_bytes:,} / {base_bytes:,})")
    print(f"\nratio service / HF Trainer = b/a = {b / a:.3f}  (goal <= 0.85 at the same accuracy)")
    print(f"service / bare tuneforge = {b / median(bare_times):.3f}")


if __name__ == "__main__":
    main()

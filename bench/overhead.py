"""Service overhead: the same LoRA fine-tune of minilm-l6 on real BBC News, bare vs. through the service.

(a) a bare script (`bench.bare_run`, a fresh process calling the training code directly);
(b) the service: api + worker processes on the local PostgreSQL/Redis, submit over HTTP, poll until
    succeeded with artifacts written.
Both are wall times of a fresh process's work (imports and model load included on both sides).
Prints both, the ratio b/a (goal <= 1.10), submit-to-first-step latency, and the LoRA and BitFit
artifact sizes as a fraction of the base model's size.

    python bench/overhead.py [--n 2000] [--max-length 128] [--repeats 1]
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



def bare(train: Path, settings: dict, work: Path) -> tuple[float, float]:
    """(process wall time, seconds inside the training call)."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "bench.bare_run", "--method", "lora", "--train", str(train),
                    "--out", str(work / f"bare-{secrets.token_hex(3)}"), "--settings", json.dumps(settings)],
                   cwd=ROOT, check=True, capture_output=True, text=True)
    return time.perf_counter() - start, json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


class Service(Deployment):
    """One api + one worker, one tenant."""

    def __init__(self, work: Path):
        super().__init__(work, workers=1)
        self.headers = self.tenant_headers("bench")

    def run(self, train: Path, method: dict) -> tuple[float, float, list[dict]]:
        """(submit->succeeded seconds, submit->first step seconds, artifacts)."""
        with httpx.Client(base_url=f"{self.url}/v1", headers=self.headers, timeout=60) as http:
            file_id = http.post("/files", files={"file": ("train.jsonl", train.read_bytes())},
                                data={"purpose": "fine-tune"}).json()["id"]
            start = time.perf_counter()
            job = http.post("/fine_tuning/jobs", json={"model": "minilm-l6", "training_file": file_id, "seed": 0,
                                                       "method": method}).json()
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
            return total, first_step or total, artifacts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="BBC News training examples")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tuneforge-bench-"))
    rows = load_bbc_news(seed=0)[: args.n]
    train = write_jsonl(work / "train.jsonl", rows)
    hyper = {"n_epochs": 1, "batch_size": args.batch_size, "max_length": args.max_length}
    settings = {"r": 8, "hyperparameters": hyper}
    service = Service(work)
    bare_times, train_times, service_times, first_steps = [], [], [], []
    try:
        for _ in range(args.repeats):  # interleaved so drift on a shared machine hits both alike
            wall, inside = bare(train, settings, work)
            bare_times.append(wall)
            train_times.append(inside)
            total, first, lora_artifacts = service.run(train, {"type": "lora", "lora": settings})
            service_times.append(total)
            first_steps.append(first)
        small = write_jsonl(work / "small.jsonl", rows[:64])
        _, _, bitfit_artifacts = service.run(small, {"type": "bitfit", "bitfit": {"hyperparameters": {
            "n_epochs": 1, "batch_size": 16, "max_length": 64}}})
    finally:
        service.close()
    base_bytes = sum(f.stat().st_size for f in minilm_path().rglob("*") if f.is_file())

    def weights_bytes(artifacts: list[dict], prefix: str) -> int:
        return sum(a["bytes"] for a in artifacts if a["name"].startswith(prefix))

    a, b = statistics.median(bare_times), statistics.median(service_times)
    print(f"\nLoRA (r=8) fine-tune of minilm-l6 on {len(rows)} BBC News articles, 1 epoch, batch {args.batch_size}, "
          f"max_length {args.max_length}, {args.repeats} run(s) each, medians:")
    print(f"{'measure':<44}{'value':>14}")
    print(f"{'(a) bare script wall time':<44}{a:>13.1f}s")
    print(f"{'    of which the training call itself':<44}{statistics.median(train_times):>13.1f}s")
    print(f"{'(b) through the service, submit->succeeded':<44}{b:>13.1f}s")
    print(f"{'submit -> first training step':<44}{statistics.median(first_steps):>13.1f}s")
    lora_bytes, bitfit_bytes = weights_bytes(lora_artifacts, "adapter/"), weights_bytes(bitfit_artifacts, "delta/")
    print(f"{'LoRA adapter bytes / base model bytes':<44}{lora_bytes / base_bytes:>14.4f}  ({lora_bytes:,} / {base_bytes:,})")
    print(f"{'BitFit delta bytes / base model bytes':<44}{bitfit_bytes / base_bytes:>14.4f}  ({bitfit_bytes:,} / {base_bytes:,})")
    print(f"\nratio b/a = {b / a:.3f}  (goal <= 1.10)")
    print(f"stricter: b / (training call alone) = {b / statistics.median(train_times):.3f}")


if __name__ == "__main__":
    main()

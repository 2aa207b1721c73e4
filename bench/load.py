"""Load and fairness: T tenants × J tiny jobs submitted concurrently to a real deployment (local
PostgreSQL/Redis, 2 workers). Every job must reach a final state exactly once. Prints submit latency
and queue wait (started_at - created_at) per tenant, the fairness figure (max over tenants of mean
wait / min over tenants), and GET-job / list-jobs latency at a fixed request rate next to a bare
FastAPI endpoint that reads one row (the ratio is the API's overhead).

    python bench/load.py [--tenants 10] [--jobs 100] [--workers 2] [--rate 50] [--requests 300]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.deployment import Deployment  # noqa: E402
from tests.tiny_models import make_classification_rows, make_tiny_bert  # noqa: E402

TRAIN = "".join(json.dumps(r) + "\n" for r in make_classification_rows(16)).encode()
METHOD = {"type": "bitfit", "bitfit": {"hyperparameters": {"n_epochs": 1, "batch_size": 8, "max_length": 16}}}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def submit_all(dep: Deployment, tenants: int, jobs: int) -> dict[str, list[float]]:
    """Each tenant submits its jobs from its own thread, all at once; returns submit latencies."""
    latencies: dict[str, list[float]] = {}

    def tenant_run(name: str) -> None:
        headers = dep.tenant_headers(name)
        with httpx.Client(base_url=f"{dep.url}/v1", headers=headers, timeout=60) as http:
            file_id = http.post("/files", files={"file": ("t.jsonl", TRAIN)}, data={"purpose": "fine-tune"}).json()["id"]
            times = []
            for i in range(jobs):
                start = time.perf_counter()
                r = http.post("/fine_tuning/jobs", json={"model": "tiny-bert", "training_file": file_id, "seed": i,
                                                         "method": METHOD})
                r.raise_for_status()
                times.append(time.perf_counter() - start)
            latencies[name] = times

    with ThreadPoolExecutor(tenants) as pool:
        list(pool.map(tenant_run, [f"load-{t}" for t in range(tenants)]))
    return latencies


def wait_final(dep: Deployment, total: int, timeout: float) -> list[tuple]:
    deadline = time.monotonic() + timeout
    with psycopg.connect(dep.database_url) as conn:
        while time.monotonic() < deadline:
            rows = conn.execute("select t.name, j.status, j.attempt, extract(epoch from j.started_at - j.created_at) "
                                "from jobs j join tenants t on t.id = j.tenant_id").fetchall()
            if len(rows) == total and all(r[1] in ("succeeded", "failed", "cancelled") for r in rows):
                return rows
            time.sleep(1)
    raise SystemExit(f"not every job finished within {timeout}s")


def paced(url: str, headers: dict, rate: float, n: int) -> list[float]:
    """n GETs at a fixed rate (open loop), latencies in ms."""
    out: list[float] = []
    lock = threading.Lock()

    def one() -> None:
        start = time.perf_counter()
        httpx.get(url, headers=headers, timeout=30).raise_for_status()
        with lock:
            out.append((time.perf_counter() - start) * 1000)

    with ThreadPoolExecutor(16) as pool:
        begin = time.perf_counter()
        for i in range(n):
            time.sleep(max(0.0, begin + i / rate - time.perf_counter()))
            pool.submit(one)
    return out


def bare_endpoint(dep: Deployment):
    """Start bench/bare_app.py under uvicorn; returns (process, base url)."""
    import subprocess

    from app.core.embedded import free_port
    from tests.harness import ROOT, wait_http

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--port", str(port),
                             "--log-level", "warning"], env=dep.env, cwd=ROOT)
    wait_http(f"http://127.0.0.1:{port}/docs", proc, timeout=30, interval=0.1)
    return proc, f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tuneforge-load-"))
    dep = Deployment(work, workers=args.workers)
    try:
        dep.cli("models", "add", "tiny-bert", str(make_tiny_bert(work / "tiny-bert")))
        start = time.perf_counter()
        latencies = submit_all(dep, args.tenants, args.jobs)
        rows = wait_final(dep, args.tenants * args.jobs, timeout=7200)
        elapsed = time.perf_counter() - start
        waits: dict[str, list[float]] = {}
        for name, status, attempt, wait in rows:
            waits.setdefault(name, []).append(float(wait or 0))
        statuses = {s: sum(r[1] == s for r in rows) for s in {r[1] for r in rows}}
        print(f"\n{args.tenants} tenants × {args.jobs} jobs, {args.workers} workers: {len(rows)} jobs final in "
              f"{elapsed:.0f}s {statuses}; attempts > 1: {sum(r[2] > 1 for r in rows)}")
        print(f"{'tenant':<10}{'submit p50 ms':>14}{'submit p99 ms':>14}{'wait p50 s':>12}{'wait p99 s':>12}{'wait mean s':>13}")
        for name in sorted(waits):
            lat = [x * 1000 for x in latencies[name]]
            print(f"{name:<10}{pct(lat, .5):>14.1f}{pct(lat, .99):>14.1f}{pct(waits[name], .5):>12.1f}"
                  f"{pct(waits[name], .99):>12.1f}{statistics.mean(waits[name]):>13.1f}")
        means = [statistics.mean(w) for w in waits.values()]
        print(f"\nfairness = max mean wait / min mean wait = {max(means) / max(min(means), 1e-9):.2f}")
        headers = dep.tenant_headers("reader")
        with httpx.Client(base_url=f"{dep.url}/v1", headers=headers) as http:
            file_id = http.post("/files", files={"file": ("t.jsonl", TRAIN)}, data={"purpose": "fine-tune"}).json()["id"]
            job_id = http.post("/fine_tuning/jobs", json={"model": "tiny-bert", "training_file": file_id}).json()["id"]
        bare_proc, bare_url = bare_endpoint(dep)
        try:
            bare = paced(f"{bare_url}/row/{job_id}", {}, args.rate, args.requests)
            get = paced(f"{dep.url}/v1/fine_tuning/jobs/{job_id}", headers, args.rate, args.requests)
            lst = paced(f"{dep.url}/v1/fine_tuning/jobs?limit=20", headers, args.rate, args.requests)
        finally:
            bare_proc.terminate()
        print(f"\n{'endpoint at ' + format(args.rate, 'g') + ' req/s':<28}{'p50 ms':>10}{'p99 ms':>10}")
        for label, values in (("bare FastAPI one-row read", bare), ("GET job", get), ("list jobs", lst)):
            print(f"{label:<28}{pct(values, .5):>10.1f}{pct(values, .99):>10.1f}")
        print(f"\nratio GET job / bare p50 = {pct(get, .5) / pct(bare, .5):.2f}, "
              f"list jobs / bare p50 = {pct(lst, .5) / pct(bare, .5):.2f}")
    finally:
        dep.close()


if __name__ == "__main__":
    main()

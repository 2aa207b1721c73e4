"""Load and fairness: T tenants × J tiny jobs submitted concurrently to a real deployment (local
PostgreSQL/Redis, 2 workers). Every job must reach a final state exactly once. Prints submit latency
and queue wait (started_at - created_at) per tenant, the fairness figure (max over tenants of mean
wait / min over tenants), and GET-job / list-jobs latency at a fixed request rate next to a bare
FastAPI endpoint that reads one row (the ratio is the API's overhead).

Then throughput: `--clients` concurrent keep-alive connections each sending GET job back to back (closed
loop) for `--seconds`, against the bare endpoint and the API in alternating rounds (bare, api, bare, api,
...), so both see the same load on a shared machine; requests/s and p50/p99 per side and their ratios.
Both run under the same uvicorn settings as `tuneforge api` (h11, access log, `--api-workers` processes); the load
generator is a few lines of asyncio over raw sockets, so its own CPU use stays small beside the servers'.

    python bench/load.py [--tenants 10] [--jobs 100] [--workers 2] [--rate 50] [--requests 300]
    python bench/load.py --reads-only [--clients 32] [--seconds 10] [--rounds 3] [--api-workers 1]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.deployment import Deployment  # noqa: E402
from tests.harness import Service  # noqa: E402
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


def bare_endpoint(dep: Deployment, workers: int = 1):
    """Start bench/bare_app.py under uvicorn as `tuneforge api` runs it (h11, `workers` processes, an access
    log line per request); returns (process, base url)."""
    import subprocess

    from app.core.embedded import free_port
    from tests.harness import ROOT, wait_http

    port = free_port()
    with open(dep.service.log_path.parent / "bare.log", "ab") as log:  # the child keeps its own handle
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--port", str(port),
                                 "--log-level", "info", "--http", "h11", "--workers", str(workers)],
                                env=dep.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{port}/docs", proc, timeout=60, interval=0.1)
    return proc, f"http://127.0.0.1:{port}"


async def _client(host: str, port: int, request: bytes, deadline: float, out: list[float]) -> None:
    """One keep-alive connection sending `request` back to back until `deadline`; latencies (ms) to `out`."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            body = await reader.readexactly(length)
            if status != 200:
                raise SystemExit(f"{status} from the server: {body[:300]!r}")
            out.append((time.perf_counter() - start) * 1000)
    finally:
        writer.close()


def closed_loop(url: str, headers: dict, clients: int, seconds: float) -> tuple[float, list[float]]:
    """`clients` concurrent connections for `seconds`: (requests/s, latencies in ms)."""
    parsed = httpx.URL(url)
    lines = [f"GET {parsed.raw_path.decode()} HTTP/1.1", f"Host: {parsed.host}:{parsed.port}",
             *(f"{k}: {v}" for k, v in headers.items())]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    out: list[float] = []

    async def run() -> float:
        begin = time.perf_counter()
        await asyncio.gather(*(_client(parsed.host, parsed.port, request, begin + seconds, out)
                               for _ in range(clients)))
        return time.perf_counter() - begin

    elapsed = asyncio.run(run())
    return len(out) / elapsed, out


@dataclass
class Target:
    """One side of the comparison: where to send GET job, and the server process (with its children) whose
    CPU time it costs. CPU ms per request hardly depends on what else runs on the machine, so it is the
    steadier figure on a loaded one (saturated throughput = cores / CPU per request)."""

    name: str
    url: str
    headers: dict[str, str]
    pid: int
    rates: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)

    def cpu_seconds(self) -> float:
        parent = psutil.Process(self.pid)
        return sum(sum(p.cpu_times()[:2]) for p in [parent, *parent.children(recursive=True)])

    def round(self, clients: int, seconds: float) -> list[float]:
        before = self.cpu_seconds()
        rate, lat = closed_loop(self.url, self.headers, clients, seconds)
        self.cpu_ms.append((self.cpu_seconds() - before) * 1000 / max(1, len(lat)))
        self.rates.append(rate)
        self.latencies.extend(lat)
        return lat


def throughput(bare: Target, api: Target, clients: int, seconds: float, rounds: int) -> None:
    """Bare and API in alternating rounds; prints each round and the totals."""
    for side in (bare, api):  # warm both: connection pools, imports, first-request paths
        closed_loop(side.url, side.headers, clients, 1)
    print(f"\nclosed loop, {clients} clients, {rounds} x {seconds:g} s per side, load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'round':<8}{'side':<6}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/req':>12}")
    for r in range(rounds):
        for side in (bare, api):
            lat = side.round(clients, seconds)
            print(f"{r + 1:<8}{side.name:<6}{side.rates[-1]:>9.0f}{pct(lat, .5):>9.1f}{pct(lat, .99):>9.1f}"
                  f"{side.cpu_ms[-1]:>12.2f}")
    ratios = [a / b for a, b in zip(api.rates, bare.rates)]
    print(f"\nGET job / bare: requests/s {statistics.mean(api.rates) / statistics.mean(bare.rates):.2f}x "
          f"(median of rounds {statistics.median(ratios):.2f}: {', '.join(f'{r:.2f}' for r in ratios)}), "
          f"p50 {pct(api.latencies, .5) / pct(bare.latencies, .5):.2f}x, "
          f"p99 {pct(api.latencies, .99) / pct(bare.latencies, .99):.2f}x; server CPU per request "
          f"{statistics.median(api.cpu_ms):.2f} / {statistics.median(bare.cpu_ms):.2f} ms "
          f"(bare / API = {statistics.median(bare.cpu_ms) / statistics.median(api.cpu_ms):.2f}x); "
          f"load average {os.getloadavg()[0]:.1f}")


def reads_only(work: Path, args: argparse.Namespace) -> None:
    """Only the read comparison: an API (`--api-workers` processes, no training workers) and the bare app."""
    dep = Deployment(work, workers=0)
    service = None
    try:
        dep.cli("models", "add", "tiny-bert", str(make_tiny_bert(work / "tiny-bert")))
        headers = dep.tenant_headers("reader")
        with httpx.Client(base_url=f"{dep.url}/v1", headers=headers) as http:
            file_id = http.post("/files", files={"file": ("t.jsonl", TRAIN)}, data={"purpose": "fine-tune"}).json()["id"]
            job_id = http.post("/fine_tuning/jobs", json={"model": "tiny-bert", "training_file": file_id}).json()["id"]
        api_url, api_pid = dep.url, dep.service.processes["api"].pid
        if args.api_workers > 1:
            service = Service(dep.env, log_path=work / "api-workers.log")
            api_pid = service.start_api("--workers", str(args.api_workers), "--no-maintenance").pid
            api_url = service.url
        bare_proc, bare_url = bare_endpoint(dep, args.api_workers)
        try:
            throughput(Target("bare", f"{bare_url}/row/{job_id}", {}, bare_proc.pid),
                       Target("api", f"{api_url}/v1/fine_tuning/jobs/{job_id}", headers, api_pid),
                       args.clients, args.seconds, args.rounds)
        finally:
            bare_proc.terminate()
            bare_proc.wait()
    finally:
        if service is not None:
            service.stop()
        dep.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--reads-only", action="store_true", help="Skip the jobs; only compare reads.")
    parser.add_argument("--clients", type=int, default=32, help="Concurrent connections in the closed loop.")
    parser.add_argument("--seconds", type=float, default=4, help="Length of one closed-loop round per side.")
    parser.add_argument("--rounds", type=int, default=10, help="Alternating bare/API rounds.")
    parser.add_argument("--api-workers", type=int, default=1, help="uvicorn processes for the API and the bare app.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tuneforge-load-"))
    if args.reads_only:
        return reads_only(work, args)
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
            throughput(Target("bare", f"{bare_url}/row/{job_id}", {}, bare_proc.pid),
                       Target("api", f"{dep.url}/v1/fine_tuning/jobs/{job_id}", headers,
                              dep.service.processes["api"].pid), args.clients, args.seconds, args.rounds)
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

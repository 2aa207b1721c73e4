"""Predictions over hot-swapped LoRA adapters against one merged model (issue 15).

    python bench/serve.py [--quick] [--requests 400] [--clients 8] [--inputs 8] [--rounds 3] [--no-http]

The adapters: one real LoRA (r=8) of minilm-l6 trained by `bench.bare_run` on a few election tweets
(1 epoch), and 49 more derived from it by adding seeded Gaussian noise (5% of each tensor's std) to its
LoRA matrices and head, each with its own manifest: 50 distinct adapters of one base, made in seconds
(their weights are not trained; their shapes, sizes and cost per forward pass are a real adapter's).
The merged model: that LoRA folded into the base (`merged_classifier`, the merged export), loaded
whole, served by the same runtime.

In-process (app.predictions.registry, no HTTP): `--clients` threads each send requests of `--inputs`
tweets back to back, round-robin over 1, 10 and 50 adapters, then all to the merged model; throughput
(inputs/s) and request latency p50/p99. Then the cold load of one adapter into the shared base's pool;
the switch: what the serving path pays for one more adapter in a forward pass (peft's mixed-adapter
batches name each row's adapter, nothing is switched), beside peft's `set_adapter` with 50 adapters
loaded (the path of pools peft cannot mix); the weight bytes of 50 adapters over one base against 50
merged copies; and one HTTP figure: the same requests against `tuneforge api` for a job trained through
the service (after 3 warm-up requests).

Judged: throughput with 50 adapters / merged-model throughput (goal >= 0.8), switch < 10 ms.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import torch
from safetensors.torch import load_file, save_file

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo, not bench/: bench/peft.py would shadow peft

from app.fsio import directory_sha256  # noqa: E402
from app.predictions.registry import PredictionRuntime  # noqa: E402
from app.predictions.served import ServedModel, describe  # noqa: E402
from app.training.artifacts import read_manifest, write_manifest  # noqa: E402
from app.training.base import BaseModelRef  # noqa: E402
from bench.bare_run import bare_run, minilm_path  # noqa: E402
from bench.data import load_election_tweets, write_jsonl  # noqa: E402

ADAPTER = Path("adapter") / "adapter_model.safetensors"
SETTINGS = {"r": 8, "hyperparameters": {"n_epochs": 1, "batch_size": 8, "max_length": 64}}


def rewrite_manifest(artifact: Path) -> None:
    """List the artifact's (changed) files again, keeping every other manifest field."""
    fields = {k: v for k, v in read_manifest(artifact).items() if k not in ("format_version", "files")}
    (artifact / "manifest.json").unlink()
    write_manifest(artifact, **fields)


def derive_adapters(trained: Path, work: Path, n: int) -> list[Path]:
    """`trained` plus n - 1 copies whose tensors carry seeded noise (5% of each tensor's std)."""
    adapters = [trained]
    weights = load_file(trained / ADAPTER)
    for i in range(1, n):
        copy = work / f"adapter-{i}"
        shutil.copytree(trained, copy)
        noise = torch.Generator().manual_seed(i)
        save_file({k: v + 0.05 * v.float().std().nan_to_num() * torch.randn(v.shape, generator=noise)
                   for k, v in weights.items()}, copy / ADAPTER)
        rewrite_manifest(copy)
        adapters.append(copy)
    return adapters


def merged_artifact(trained: Path, base: Path, work: Path) -> Path:
    """The LoRA folded into the base (the merged export), as a whole-model artifact of its own."""
    from app.training.export import merged_classifier

    out = work / "merged"
    model, tokenizer = merged_classifier(trained, base)
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    manifest = read_manifest(trained)
    write_manifest(out, method="supervised", task="sequence_classification", labels=manifest["labels"],
                   base_model=manifest["base_model"], hyperparameters=manifest["hyperparameters"])
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def load_test(send: Callable[[int], None], requests: int, clients: int) -> tuple[float, list[float]]:
    """(wall seconds, per-request latencies) of `clients` closed-loop threads sending `requests` in all;
    send(i) sends request i."""
    latencies: list[float] = []
    counter = iter(range(requests))
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            start = time.perf_counter()
            send(i)
            with lock:
                latencies.append(time.perf_counter() - start)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, latencies


def summary(wall: float, latencies: list[float], inputs: int) -> tuple[float, float, float]:
    """(inputs/s, p50 s, p99 s)."""
    return len(latencies) * inputs / wall, percentile(latencies, 50), percentile(latencies, 99)


def unique_bytes(modules: list[torch.nn.Module]) -> int:
    """Bytes of every distinct tensor storage the modules hold (shared base tensors count once)."""
    seen: dict[int, int] = {}
    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            seen[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
    return sum(seen.values())


def switch_and_load(adapters: list[ServedModel], texts: list[str]) -> tuple[float, float, float]:
    """Median ms: (a) loading one adapter cold into the shared pool; (b) peft's `set_adapter` with all of
    them loaded (what a pool peft cannot mix pays per adapter); (c) what the serving path pays instead:
    the extra time of a 64-row mixed forward pass per additional adapter it names (8 adapters vs 1)."""
    from app.predictions.engines import Engines, encode

    engines = Engines(len(adapters), 1, 64)
    engines.load(adapters[0])  # the shared base and the pool exist from here on
    loads = []
    for served in adapters[1:]:
        start = time.perf_counter()
        engines.load(served)
        loads.append(time.perf_counter() - start)
    loaded = [engines.load(served) for served in adapters[:8]]
    pool = loaded[0].runner
    switches = []
    for i in range(20):
        start = time.perf_counter()
        pool.peft.set_adapter(loaded[i % 2].name)
        switches.append(time.perf_counter() - start)
    pool.peft.set_adapter(loaded[0].name)
    batch = dict(loaded[0].tokenizer.pad(encode(loaded[0].tokenizer, [(t, None) for t in texts[:64]], 64),
                                         return_tensors="pt"))
    one, eight = [loaded[0].name] * 64, [loaded[i % 8].name for i in range(64)]
    passes: dict[int, list[float]] = {1: [], 8: []}
    with torch.no_grad():
        pool.logits(batch, eight), pool.logits(batch, one)  # first passes of these shapes: not timed
        for i in range(20):
            names = one if i % 2 else eight
            start = time.perf_counter()
            pool.logits(batch, names)
            passes[len(set(names))].append(time.perf_counter() - start)
    mixed = (statistics.median(passes[8]) - statistics.median(passes[1])) / 7
    return statistics.median(loads) * 1e3, statistics.median(switches) * 1e3, max(mixed, 0.0) * 1e3


def http_figure(train: Path, texts: list[str], work: Path, requests: int, clients: int, inputs: int):
    """(requests/s, p50 s, p99 s) over HTTP against `tuneforge api`, for a LoRA job trained by the service."""
    from bench.deployment import Deployment

    deployment = Deployment(work / "http")
    try:
        with httpx.Client(base_url=f"{deployment.url}/v1", headers=deployment.tenant_headers("bench"),
                          timeout=300) as http:
            file_id = http.post("/files", files={"file": ("train.jsonl", train.read_bytes())},
                                data={"purpose": "fine-tune"}).json()["id"]
            job = http.post("/fine_tuning/jobs", json={"model": "minilm-l6", "training_file": file_id, "seed": 0,
                                                       "method": {"type": "lora", "lora": SETTINGS}}).json()
            while (status := http.get(f"/fine_tuning/jobs/{job['id']}").json())["status"] not in (
                    "succeeded", "failed", "cancelled"):
                time.sleep(0.5)
            if status["status"] != "succeeded":
                raise SystemExit(f"the service's job ended {status['status']}: {status['error']}")

            def send(i: int) -> None:
                batch = [texts[(i * inputs + k) % len(texts)] for k in range(inputs)]
                response = http.post("/predictions", json={"model": status["fine_tuned_model"], "input": batch})
                response.raise_for_status()

            for i in range(3):  # loads the base and the adapter, warms the first forward passes
                send(i)
            return summary(*load_test(send, requests, clients), inputs)
    finally:
        deployment.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: few requests, 2 clients")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--inputs", type=int, default=8, help="tweets per request")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds over the rows")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP figure (starts api + worker)")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.clients, args.rounds = 24, 2, 1
    work = Path(tempfile.mkdtemp(prefix="tuneforge-bench-serve-"))
    tweets = load_election_tweets(seed=0)
    train = write_jsonl(work / "train.jsonl", tweets[:32])
    texts = [row["text"] for row in tweets[32:1032]]
    base_dir = minilm_path()
    base = BaseModelRef("minilm-l6", base_dir, directory_sha256(base_dir))
    bare_run("lora", train, work / "trained", SETTINGS)
    adapters = [describe(f"adapter-{i}", path, base)
                for i, path in enumerate(derive_adapters(work / "trained", work, 50))]
    merged = describe("merged", merged_artifact(work / "trained", base_dir, work), base)
    runtime = PredictionRuntime(max_adapters=64, max_models=2, batch_rows=64)

    configs = {"one merged model": [merged], **{f"{n} LoRA adapter{'s' if n > 1 else ''}, one base": adapters[:n]
                                                for n in (1, 10, 50)}}
    for models in configs.values():  # loaded, and their first forward passes run, before any clock starts
        for served in models:
            runtime.predict(served, [(texts[0], None)])
    walls = {name: 0.0 for name in configs}
    latencies: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(args.rounds):  # interleaved, so drift on a shared machine hits every row alike
        for name, models in configs.items():
            def send(i: int, models: list[ServedModel] = models) -> None:
                batch = [(texts[(i * args.inputs + k) % len(texts)], None) for k in range(args.inputs)]
                runtime.predict(models[i % len(models)], batch)
            wall, seen = load_test(send, args.requests // args.rounds, args.clients)
            walls[name] += wall
            latencies[name] += seen
    rows = {name: summary(walls[name], latencies[name], args.inputs) for name in configs}
    load_ms, set_adapter_ms, switch_ms = switch_and_load(adapters, texts)
    engines = runtime.engines
    adapter_bytes = unique_bytes([pool.peft for pool in engines.pools.values()])  # the base counted once
    merged_bytes = unique_bytes([engines.models.get(merged.key).runner.model])
    http = None if args.no_http else http_figure(train, texts, work, args.requests, args.clients, args.inputs)

    print(f"\nminilm-l6, {args.clients} client threads, {args.requests} requests of {args.inputs} tweets each per row "
          f"in {args.rounds} interleaved round(s) (max_length 64), torch threads {torch.get_num_threads()}:")
    print(f"{'served':<34}{'inputs/s':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for name, (rate, p50, p99) in rows.items():
        print(f"{name:<34}{rate:>10.1f}{p50 * 1e3:>9.1f}{p99 * 1e3:>9.1f}")
    if http:
        print(f"{'HTTP, tuneforge api, 1 adapter':<34}{http[0]:>10.1f}{http[1] * 1e3:>9.1f}"
              f"{http[2] * 1e3:>9.1f}")
    print(f"\nadapter load, cold (disk -> shared pool): {load_ms:.1f} ms")
    print(f"switch in the serving path (mixed-adapter batch, extra per adapter in a 64-row pass): {switch_ms:.3f} ms")
    print(f"switch by peft's set_adapter with 50 adapters loaded (pools peft cannot mix): {set_adapter_ms:.2f} ms")
    print(f"weights in memory: base + 50 adapters {adapter_bytes / 2**20:.1f} MiB vs 50 merged copies "
          f"{50 * merged_bytes / 2**20:.1f} MiB ({50 * merged_bytes / adapter_bytes:.1f}x)")
    ratio = rows["50 LoRA adapters, one base"][0] / rows["one merged model"][0]
    print(f"\nratio throughput(50 adapters) / throughput(one merged model) = {ratio:.3f}  (goal >= 0.8)")
    print(f"switch time = {switch_ms:.3f} ms  (goal < 10 ms)")


if __name__ == "__main__":
    main()

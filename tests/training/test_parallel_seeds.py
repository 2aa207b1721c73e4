"""`stability.parallel_seeds`: seeds trained side by side in child processes reach what the sequential run
reaches (same seeds kept, same curves, same artifact), and a job paused, or whose worker is SIGKILLed,
while children train resumes to the same artifact and leaves no orphan process behind."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from app.training.methods import MethodError, parse_method
from app.training.registry import run_strategy
from tests.training.conftest import ListSink, context_factory

# 24 steps a seed, discarded after 6: stage 1 is job-wide steps 1-18 (seeds 0 and 1 side by side, then seed 2),
# stage 2 steps 19-54 (the two survivors side by side)
SEEDS = {"n_seeds": 3, "keep": 2}
COMMON = dict(n_train=24, n_epochs=8)


def _settings(parallel: int | str) -> dict:
    return {"stability": {**SEEDS, "parallel_seeds": parallel}}


def _weights(ctx) -> dict:
    return load_file(ctx.output_dir / "delta" / "delta.safetensors")


def _assert_same(a, b, tolerance: float = 1e-5) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and max((wa[k] - wb[k]).abs().max().item() for k in wa) <= tolerance
    selected = [json.loads((c.output_dir / "manifest.json").read_text())["stability"]["outcome"]["selected_seed"]
                for c in (a, b)]
    assert selected[0] == selected[1]


def _curves(ctx) -> dict[tuple[int, int], float]:
    return {(m["seed"], m["step"]): m["train_loss"] for m in ctx.sink.of("metrics") if "train_loss" in m}


class PauseAt(ListSink):
    """Answers "pause" once a training-loss event at job-wide step `at` or later came in."""

    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def should_stop(self):
        return "pause" if any(m["step"] >= self.at for m in self.of("metrics") if "train_loss" in m) else None


@pytest.fixture(scope="module")
def runs(base_ref, tmp_path_factory):
    root = tmp_path_factory.mktemp("parallel")
    make = context_factory(base_ref, root)
    sequential = make("bitfit", _settings(1), output="sequential", **COMMON)
    parallel = make("bitfit", _settings(2), output="parallel", **COMMON)
    run_strategy(sequential), run_strategy(parallel)
    return {"make": make, "root": root, "sequential": sequential, "parallel": parallel}


def test_parallel_seeds_train_as_the_sequential_run(runs):
    sequential, parallel = runs["sequential"], runs["parallel"]
    _assert_same(sequential, parallel)
    a, b = _curves(sequential), _curves(parallel)
    assert a.keys() == b.keys() and all(abs(a[k] - b[k]) <= 1e-5 for k in a)  # every seed's curve, tagged
    [plan] = [m for m in parallel.sink.of("message") if m.startswith("Seeds: [")]
    assert "2 at a time, each in its own process (parallel_seeds=2)" in plan
    assert "one after another" in [m for m in sequential.sink.of("message") if m.startswith("Seeds: [")][0]
    ledger = [json.loads((c.checkpoint_dir / "seeds.json").read_text()) for c in (sequential, parallel)]
    assert ledger[0]["discarded"] == ledger[1]["discarded"]


def test_a_paused_parallel_stage_resumes_to_the_same_artifact(runs):
    make = runs["make"]
    paused = make("bitfit", _settings(2), output="paused", sink=PauseAt(20), **COMMON)  # in stage 2, both survivors
    assert run_strategy(paused).status == "paused"
    resumed = make("bitfit", _settings(2), output="paused", **COMMON)
    assert run_strategy(resumed).status == "succeeded"
    assert any("Resumed from checkpoint" in m for m in resumed.sink.of("message"))
    _assert_same(runs["sequential"], resumed)


KILLED = """
import json, multiprocessing, os, signal, sys
from pathlib import Path
from app.fsio import directory_sha256
from app.training.base import BaseModelRef
from app.training.registry import run_strategy
from tests.training.conftest import ListSink, context_factory

class KillAt(ListSink):
    def metrics(self, step, values):
        super().metrics(step, values)
        if "train_loss" in values and step >= 2:  # early in stage 1, both children training
            Path(sys.argv[3]).write_text(json.dumps([p.pid for p in multiprocessing.active_children()]))
            os.kill(os.getpid(), signal.SIGKILL)

base = Path(sys.argv[1])
make = context_factory(BaseModelRef("tiny-bert", base, directory_sha256(base)), Path(sys.argv[2]))
run_strategy(make("bitfit", json.loads(sys.argv[4]), output="killed", sink=KillAt(), n_train=24, n_epochs=8))
"""


def test_a_sigkilled_worker_leaves_no_seed_process_and_the_job_resumes(runs, base_ref):
    pids = runs["root"] / "children.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", KILLED, str(base_ref.path), str(runs["root"]), str(pids),
                          json.dumps(_settings(2))], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == -9, out.stderr[-3000:]
    children = json.loads(pids.read_text())
    assert len(children) == 2
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in children)  # PR_SET_PDEATHSIG: they died with the worker
    resumed = runs["make"]("bitfit", _settings(2), output="killed", **COMMON)
    assert run_strategy(resumed).status == "succeeded"
    _assert_same(runs["sequential"], resumed)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("parallel, fragment", [(0, "at least 1"), (4, "at most n_seeds (3)"),
                                                ("many", "auto")])
def test_bad_parallel_seeds_is_refused_naming_the_field(parallel, fragment):
    with pytest.raises(MethodError) as info:
        parse_method({"type": "lora", "lora": {"stability": {**SEEDS, "parallel_seeds": parallel}}})
    assert info.value.param == "method.lora.stability.parallel_seeds" and fragment in info.value.message, info.value

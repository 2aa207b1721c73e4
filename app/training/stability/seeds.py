"""Several seeds with early discarding (Dodge et al. 2020, "Fine-Tuning Pretrained Language Models:
Weight Initializations, Data Orders, and Early Stopping"): start `n_seeds` seeds (weight initialisation
and data order both follow the seed), stop all but the `keep` best by validation score after
`discard_after` of fine-tuning, finish those and keep the best as the artifact.

Seeds run one after another, or `parallel_seeds` at a time in child processes (parallel.py). Seed i
is the job's seed + i·SEED_STRIDE, so seed 0 is the job's own. A seed pauses at the discard point as a
paused job does (a checkpoint), and the survivors continue from it, so each reaches the weights it
would reach alone. Step numbers are job-wide: stage 1 gives each seed a slot of probe + discard-point
steps, stage 2 each survivor one of the remaining steps; every event carries its `seed`. `seeds.json`
in the job's checkpoint dir records each seed's score at the discard point and its final result, and
`seed-<s>/final/` a finished seed's weights, so a paused or re-queued job keeps the finished seeds and
continues the current ones from their last checkpoints.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from app.fsio import fsync_tree, replace_dir, replace_file
from app.training.base import OffsetSink, TrainContext, TrainResult
from app.training.best import score as default_score
from app.training.checkpoints import copy_into, trainable_state
from app.training.classification import Build, Save, TaskData, finish_classifier
from app.training.engine import RunResult
from app.training.stability.early_stopping import metric_score
from app.training.stability.parallel import SEED_ROLE, SeedRole, parallel_count, run_children
from app.training.stability.runner import (SeedRun, build_seed_classifier, job_wide, probe_steps, seed_context,
                                           stability_of, stopped_result, train_seed)
from app.training.stability.settings import StabilitySettings

SEED_STRIDE = 10_007  # seeds apart by more than the 50 epochs whose shuffles are seeded seed + epoch
LEDGER = "seeds.json"
FINAL = "final"


@dataclasses.dataclass(frozen=True)
class SeedPlan:
    """Which seeds run, and the job-wide step numbers of each one's stages."""

    seeds: list[int]
    keep: int
    probe_steps: int  # per seed (LP-FT), 0 without
    fine_tune_steps: int  # per seed
    halt: int  # the discard point, in fine-tuning steps

    @classmethod
    def of(cls, stability: StabilitySettings, seed: int, n_epochs: int, steps_per_epoch: int) -> SeedPlan:
        fine_tune = n_epochs * steps_per_epoch
        return cls(seeds=[seed + SEED_STRIDE * i for i in range(stability.n_seeds)], keep=stability.keep,
                   probe_steps=probe_steps(stability, n_epochs, steps_per_epoch), fine_tune_steps=fine_tune,
                   halt=min(fine_tune, max(1, round(stability.discard_after * fine_tune))))

    @property
    def first_slot(self) -> int:
        return self.probe_steps + self.halt

    @property
    def total_steps(self) -> int:
        return len(self.seeds) * self.first_slot + self.keep * (self.fine_tune_steps - self.halt)

    def offsets(self, index: int, survivor: int | None = None) -> tuple[int, int]:
        """(probe, fine-tuning) step offsets of seed `index`, in stage 1 or as the `survivor`-th in stage 2."""
        if survivor is None:
            return index * self.first_slot, index * self.first_slot + self.probe_steps
        start = len(self.seeds) * self.first_slot + survivor * (self.fine_tune_steps - self.halt)
        return start, start - self.halt


class Ledger:
    """seeds.json: per seed, its result at the discard point ("first") and at its end ("final")."""

    def __init__(self, path: Path):
        self.path = path
        data = json.loads(path.read_text()) if path.is_file() else {}
        self.first: dict[str, dict[str, Any]] = data.get("first", {})
        self.final: dict[str, dict[str, Any]] = data.get("final", {})
        self.discarded: list[int] | None = data.get("discarded")

    def save(self) -> None:
        replace_file(self.path, json.dumps({"first": self.first, "final": self.final, "discarded": self.discarded}))


def _record(outcome: SeedRun, metrics: dict[str, float], score: tuple[float, ...]) -> dict[str, Any]:
    return {"status": outcome.run.status, "fine_tune_step": outcome.run.step, "steps": outcome.steps,
            "trained_tokens": outcome.trained_tokens, "flops": outcome.flops, "seconds": outcome.seconds,
            "metrics": metrics, "score": list(score), "run": dataclasses.asdict(job_wide(outcome))}


def _keep_final_weights(root: Path, outcome: SeedRun) -> None:
    staging = root / f".{FINAL}.tmp"
    staging.mkdir(parents=True, exist_ok=True)
    save_file(trainable_state(outcome.classifier.trained), staging / "trainable.safetensors")
    fsync_tree(staging)
    replace_dir(staging, root / FINAL)


def train_seeds(ctx: TrainContext, task: TaskData, build: Build, save: Save) -> TrainResult:
    """Stage 1 for every seed, the discard, stage 2 for the survivors, the winner's artifact; seeds run
    `parallel_seeds` at a time in child processes (parallel.py) when more than one fits."""
    stability, hp = stability_of(ctx), ctx.hyperparameters
    plan = SeedPlan.of(stability, hp.seed, hp.n_epochs, math.ceil(len(task.train_examples) / hp.batch_size))
    score = metric_score(stability.early_stopping.metric) if stability.early_stopping else default_score
    if SEED_ROLE in ctx.extra:  # a child process of a parallel stage: one seed's stage, reported to the parent
        role: SeedRole = ctx.extra[SEED_ROLE]
        outcome, record = _train_stage(ctx, task, build, plan, score, role.index, role.seed, role.survivor)
        ctx.sink.report(role.seed, {"record": record, "stopped": _stopped_record(outcome)})
        return stopped_result(outcome, job_wide(outcome).step)
    ledger, last = Ledger(ctx.checkpoint_dir / LEDGER), None
    pending = [s for s in plan.seeds if str(s) not in ledger.first]
    parallel, why = parallel_count(ctx, task.device, stability.parallel_seeds, len(pending) or plan.keep)
    if not ledger.first:
        at_once = "one after another" if parallel == 1 else f"{parallel} at a time, each in its own process"
        ctx.sink.message(f"Seeds: {plan.seeds} {at_once} ({why}); after {plan.halt} of {plan.fine_tune_steps} "
                         f"fine-tuning steps all but the best {plan.keep} stop (Dodge et al. 2020)",
                         data={"seeds": plan.seeds, "discard_step": plan.halt, "keep": plan.keep,
                               "total_steps": plan.total_steps, "parallel_seeds": parallel, "parallel_reason": why})
    elif pending and parallel > 1:
        ctx.sink.message(f"Seeds: {parallel} at a time ({why})", data={"parallel_seeds": parallel,
                                                                       "parallel_reason": why})

    def stage(todo: list[tuple[int, int, int | None]]) -> TrainResult | None:
        """Train `todo` ((index, seed, survivor rank or None) each), `parallel` at a time; None when all
        reached their stage's end, else the stopped job's result."""
        nonlocal last
        for start in range(0, len(todo), parallel):
            group = todo[start:start + parallel]
            if len(group) == 1:
                last = None  # one model in memory at a time: the previous seed's goes before this one is built
                last, record = _train_stage(ctx, task, build, plan, score, *group[0])
                results = {group[0][1]: {"record": record, "stopped": _stopped_record(last)}}
            else:
                last = None
                threads = max(1, torch.get_num_threads() // len(group))
                results = run_children(ctx, [SeedRole(i, s, r, threads) for i, s, r in group])
            for seed, result in results.items():
                if result["record"] is not None:
                    _enter(ledger, seed, result["record"], final=group[0][2] is not None)
            ledger.save()
            stopped = [r["stopped"] for r in results.values() if r["record"] is None]
            if stopped:
                return _stopped(stopped, ledger, {s for s, r in results.items() if r["record"] is None})
        return None

    if (result := stage([(plan.seeds.index(s), s, None) for s in pending])) is not None:
        return result
    survivors = sorted(plan.seeds, key=lambda s: ledger.first[str(s)]["score"], reverse=True)[:plan.keep]
    if ledger.discarded is None:
        ledger.discarded = [s for s in plan.seeds if s not in survivors]
        ledger.save()
        _report_discard(ctx, plan, ledger, survivors)
    todo = [(plan.seeds.index(s), s, rank) for rank, s in enumerate(survivors) if str(s) not in ledger.final]
    if (result := stage(todo)) is not None:
        return result
    return _finish(ctx, task, build, save, plan, ledger, survivors, last)


def _train_stage(ctx: TrainContext, task: TaskData, build: Build, plan: SeedPlan, score: Any, index: int, seed: int,
                 survivor: int | None) -> tuple[SeedRun, dict[str, Any] | None]:
    """One seed's stage 1 (to the discard point) or stage 2 (as the `survivor`-th survivor, to the end): its
    ledger record, or None when it paused or was cancelled. A seed that finished keeps its final weights."""
    outcome = train_seed(ctx, task, build, seed=seed, root=ctx.checkpoint_dir / f"seed-{seed}",
                         offsets=plan.offsets(index, survivor), total_steps=plan.total_steps, tags={"seed": seed},
                         halt_at=plan.halt if survivor is None else None, label=f"Seed {seed}: ")
    if outcome.run.status not in (("halted", "succeeded") if survivor is None else ("succeeded",)):
        return outcome, None
    metrics = outcome.classifier.evaluate()
    if outcome.run.status == "succeeded":  # at its end (stage 2, or early stopping before the discard point)
        _keep_final_weights(ctx.checkpoint_dir / f"seed-{seed}", outcome)
    return outcome, _record(outcome, metrics, score(metrics))


def _enter(ledger: Ledger, seed: int, record: dict[str, Any], final: bool) -> None:
    if final:
        ledger.final[str(seed)] = record
        return
    ledger.first[str(seed)] = record
    if record["status"] == "succeeded":  # finished before the discard point (early stopping)
        ledger.final[str(seed)] = record


def _stopped_record(outcome: SeedRun) -> dict[str, Any]:
    """A paused or cancelled seed's status, job-wide step and compute so far."""
    return {"status": outcome.run.status, "step": job_wide(outcome).step, "trained_tokens": outcome.trained_tokens,
            "flops": outcome.flops, "eval_metrics": outcome.run.eval_metrics}


def saved_compute(plan: SeedPlan, ledger: Ledger) -> tuple[int, float]:
    """(steps, seconds) the discarded seeds did not train: their remaining fine-tuning steps, timed at the
    pace of their own first stage (model loading included, so an estimate)."""
    left = {s: plan.fine_tune_steps - ledger.first[str(s)]["fine_tune_step"] for s in ledger.discarded or []}
    seconds = sum(n * ledger.first[str(s)]["seconds"] / max(1, ledger.first[str(s)]["steps"]) for s, n in left.items())
    return sum(left.values()), seconds


def _report_discard(ctx: TrainContext, plan: SeedPlan, ledger: Ledger, survivors: list[int]) -> None:
    saved, seconds = saved_compute(plan, ledger)
    scores = {s: ledger.first[str(s)]["metrics"] for s in plan.seeds}
    shown = ", ".join(f"{s}: accuracy {m.get('eval_accuracy', math.nan):.4f}, loss {m.get('eval_loss', math.nan):.4f}"
                      for s, m in scores.items())
    ctx.sink.message(f"Seeds: kept {survivors}, discarded {ledger.discarded} after {plan.halt} of "
                     f"{plan.fine_tune_steps} fine-tuning steps ({shown}); saved {saved} steps, about {seconds:.0f} s",
                     data={"kept": survivors, "discarded": ledger.discarded, "scores": scores, "saved_steps": saved,
                           "saved_seconds": seconds})


def _stopped(stopped: list[dict[str, Any]], ledger: Ledger, seeds: set[int]) -> TrainResult:
    """A paused or cancelled job: the other seeds' compute so far (a record holds a seed's whole) plus that of
    the seeds that stopped."""
    others = [ledger.final.get(s) or r for s, r in ledger.first.items() if int(s) not in seeds]
    return TrainResult(stopped[0]["status"], max(r["step"] for r in stopped),
                       sum(r["trained_tokens"] for r in others + stopped), sum(r["flops"] for r in others + stopped),
                       stopped[0]["eval_metrics"])


def _finish(ctx: TrainContext, task: TaskData, build: Build, save: Save, plan: SeedPlan, ledger: Ledger,
            survivors: list[int], last: SeedRun | None) -> TrainResult:
    """The winner's artifact, built from memory when it trained last, else from its kept final weights."""
    winner = max(survivors, key=lambda s: ledger.final[str(s)]["score"])  # ties: the earlier survivor
    if last is not None and last.seed == winner:
        classifier = last.classifier
    else:
        root = ctx.checkpoint_dir / f"seed-{winner}"
        sink = OffsetSink(ctx.sink, 0, {"seed": winner}, plan.total_steps)
        classifier = build_seed_classifier(seed_context(ctx, winner, root, sink), task, build)
        copy_into(classifier.trained, load_file(root / FINAL / "trainable.safetensors"))
    records = {s: ledger.final.get(s) or ledger.first[s] for s in map(str, plan.seeds)}
    final = ledger.final[str(winner)]
    saved, seconds = saved_compute(plan, ledger)
    ctx.sink.message(f"Seeds: seed {winner} won (validation accuracy {final['metrics'].get('eval_accuracy', math.nan):.4f},"
                     f" loss {final['metrics'].get('eval_loss', math.nan):.4f}); the artifact is its model",
                     data={"selected_seed": winner, "final": {s: ledger.final[str(s)]["metrics"] for s in survivors}})
    run = RunResult(**{**final["run"], "step": sum(r["steps"] for r in records.values()),
                       "trained_tokens": sum(r["trained_tokens"] for r in records.values()),
                       "flops": sum(r["flops"] for r in records.values()), "selected_step": None})
    run = dataclasses.replace(run, eval_step=run.step)  # the winner's scores are in its own (tagged) events
    summary = {"seeds": plan.seeds, "kept": survivors, "discarded": ledger.discarded, "selected_seed": winner,
               "discard_step": plan.halt, "saved_steps": saved, "saved_seconds": seconds,
               "results": {s: {k: r[k] for k in ("status", "steps", "metrics")} for s, r in records.items()}}
    stability = stability_of(ctx)
    return finish_classifier(ctx, task, classifier, run, save,
                             metrics={"selected_seed": winner, "saved_steps": saved, "saved_seconds": seconds},
                             manifest={"stability": {**stability.model_dump(mode="json", exclude_unset=True),
                                                     "outcome": summary}})

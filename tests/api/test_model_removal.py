"""`tuneforge models remove` refuses a model any job's lineage reaches, not only the jobs naming it: chains
(STILTs) stored as the source job's id or named by its fine_tuned_model, and models derived from a job
(`encoder:<job>`, `adapted:<job>`), to any depth. A real chain trained as the worker trains it, and job rows
in the real PostgreSQL for the shapes a chain can take."""
from __future__ import annotations

import secrets

from typer.testing import CliRunner

from app.core.db import session_scope
from app.core.ids import new_id
from app.models import Job
from tests.api.helpers import classification_rows, jsonl, upload
from tests.api.test_chain_jobs import _run
from tests.api.test_jobs import create
from tests.conftest import new_tenant
from tests.tiny_models import make_tiny_bert


def tuneforge(*args: str):
    from app.cli import app

    return CliRunner().invoke(app, list(args))


def _root(tmp_path) -> str:
    """A tiny BERT of its own, so the counts below are this test's jobs only."""
    from app.base_models.service import register

    model_id = f"root-{secrets.token_hex(4)}"
    with session_scope() as db:
        register(db, model_id, make_tiny_bert(tmp_path / model_id))
    return model_id


def _job(tenant_id: str, model: str, fine_tuned_model: str | None = None) -> str:
    with session_scope() as db:
        job = Job(id=new_id("ftjob-"), tenant_id=tenant_id, model=model, status="succeeded", training_file="file-x",
                  method={"type": "supervised", "supervised": {}}, seed=0, attempt=1,
                  fine_tuned_model=fine_tuned_model)
        db.add(job)
        db.flush()
        return job.id


def test_a_chain_keeps_its_root_and_its_materialized_encoder_registered(client, tmp_path):
    tenant_id, key = new_tenant()
    root = _root(tmp_path)
    train = upload(client, key, jsonl(classification_rows(16))).json()["id"]
    source = create(client, key, model=root, training_file=train, seed=1, method={
        "type": "lora", "lora": {"r": 4, "hyperparameters": {"n_epochs": 1, "batch_size": 8}}}).json()["id"]
    assert _run(client, key, source)["status"] == "succeeded"
    chained = create(client, key, model=source, training_file=train, seed=1, method={
        "type": "bitfit", "bitfit": {"hyperparameters": {"n_epochs": 1, "batch_size": 8}}}).json()["id"]
    assert _run(client, key, chained)["status"] == "succeeded"

    result = tuneforge("models", "remove", f"encoder:{source}")  # the chain's artifact applies over it
    assert result.exit_code == 1, result.output
    assert f"1 job(s) (1 succeeded: {chained})" in result.output and "model_in_use" not in result.output
    result = tuneforge("models", "remove", root)
    assert result.exit_code == 1, result.output
    assert f"2 job(s) (2 succeeded: {source}, {chained}, 1 of them through chains or models built on it)" in \
        result.output
    assert "artifact file(s)" in result.output and "0 artifact file(s)" not in result.output
    models = {m["id"] for m in client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).json()["data"]}
    assert {root, f"encoder:{source}"} <= models


def test_removal_follows_ids_fine_tuned_models_and_derived_models_to_any_depth(database, tmp_path):
    from app.base_models.service import dependent_jobs, register

    tenant_id, _ = new_tenant()
    root = _root(tmp_path)
    first = _job(tenant_id, root, fine_tuned_model=f"ft:{root}:t::first")
    with session_scope() as db:
        register(db, f"adapted:{first}", make_tiny_bert(tmp_path / "adapted"), tenant_id=tenant_id,
                 owned_by=tenant_id)
    over_adapted = _job(tenant_id, f"adapted:{first}")
    by_name = _job(tenant_id, f"ft:{root}:t::first")
    deeper = _job(tenant_id, by_name)
    _job(tenant_id, "tiny-bert")  # another root: not counted
    with session_scope() as db:
        assert dependent_jobs(db, root) == [(first, "succeeded", True), (over_adapted, "succeeded", False),
                                            (by_name, "succeeded", False), (deeper, "succeeded", False)]
        assert dependent_jobs(db, f"adapted:{first}") == [(over_adapted, "succeeded", True)]
    result = tuneforge("models", "remove", root)
    assert result.exit_code == 1 and "4 job(s) (4 succeeded: " in result.output
    assert "3 of them through chains" in result.output and deeper in result.output
    result = tuneforge("models", "remove", f"adapted:{first}")
    assert result.exit_code == 1 and f"1 job(s) (1 succeeded: {over_adapted})" in result.output
    other, _ = new_tenant()
    with session_scope() as db:  # the same names in another tenant's jobs do not chain (derived models are private)
        _job(other, by_name)
        assert len(dependent_jobs(db, root)) == 4

"""method.<type>.stability at submission: every bad block a 400 naming the field (and nothing stored), a good
one stored resolved, the Mosbach recipe's values shown and said."""
from __future__ import annotations

import pytest

from app.core.config import get_settings
from app.training.registry import get_strategy
from tests.api.helpers import assert_error, auth, classification_rows, jsonl, upload
from tests.api.test_jobs import _jobs, create, train_file  # noqa: F401  (train_file is a fixture)


@pytest.fixture
def valid_file(client, tenant) -> str:
    return upload(client, tenant[1], jsonl(classification_rows(8))).json()["id"]


@pytest.mark.parametrize("stability, field, fragment", [
    ({"n_seeds": 0}, "n_seeds", "greater than or equal to 1"),
    ({"n_seeds": 9}, "n_seeds", "above this service's maximum of 8"),
    ({"discard_after": 0}, "discard_after", "greater than 0"),
    ({"discard_after": 1}, "discard_after", "less than 1"),
    ({"n_seeds": 2, "keep": 3}, "keep", "keep (3) must be at most n_seeds (2)"),
    ({"regularizer": {"type": "r3f", "eps": 0}}, "regularizer.eps", "greater than 0"),
    ({"regularizer": {"type": "r4f", "lambda": -1}}, "regularizer.lambda", "greater than 0"),
    ({"regularizer": {"type": "vat"}}, "regularizer.type", "r3f"),
    ({"layerwise_lr_decay": 1.5}, "layerwise_lr_decay", "less than or equal to 1"),
    ({"early_stopping": {"patience": 0}}, "early_stopping.patience", "greater than or equal to 1"),
    ({"recipe": "fast"}, "recipe", "mosbach"),
    ({"n_seeds": 2, "parallel_seeds": 0}, "parallel_seeds", "at least 1"),
    ({"n_seeds": 2, "parallel_seeds": 3}, "parallel_seeds", "at most n_seeds (2); lower it or raise n_seeds"),
])
def test_bad_stability_is_refused_naming_the_field(client, tenant, train_file, valid_file, registered_tiny_model,
                                                   stability, field, fragment):
    tenant_id, key = tenant
    response = create(client, key, model=registered_tiny_model, training_file=train_file, validation_file=valid_file,
                      method={"type": "lora", "lora": {"stability": stability}})
    assert_error(response, 400, fragment, param=f"method.lora.stability.{field}")
    assert _jobs(tenant_id) == 0


@pytest.mark.parametrize("method, stability, field", [
    ("bitfit", {"early_stopping": {"patience": 2}}, "early_stopping"),
    ("supervised", {"n_seeds": 2}, "n_seeds"),
])
def test_validation_scored_remedies_need_a_validation_file(client, tenant, train_file, registered_tiny_model,
                                                           method, stability, field):
    tenant_id, key = tenant
    response = create(client, key, model=registered_tiny_model, training_file=train_file,
                      method={"type": method, method: {"stability": stability}})
    assert_error(response, 400, "validation_file", param=f"method.{method}.stability.{field}")
    nested = create(client, key, model=registered_tiny_model, training_file=train_file, method={
        "type": "adaptive", "adaptive": {"tapt": True, "then": {"type": method, method: {"stability": stability}}}})
    assert_error(nested, 400, "validation_file", param=f"method.adaptive.then.{method}.stability.{field}")
    assert _jobs(tenant_id) == 0


def test_the_seed_limit_is_a_setting(client, tenant, train_file, valid_file, registered_tiny_model, monkeypatch):
    _, key = tenant
    monkeypatch.setattr(get_settings(), "max_seeds", 2)
    body = dict(model=registered_tiny_model, training_file=train_file, validation_file=valid_file)
    assert_error(create(client, key, **body, method={"type": "lora", "lora": {"stability": {"n_seeds": 3}}}), 400,
                 "maximum of 2", param="method.lora.stability.n_seeds")
    assert create(client, key, **body, method={"type": "lora", "lora": {"stability": {"n_seeds": 2}}}).status_code == 200


def test_a_method_that_cannot_take_a_remedy_says_so(client, tenant, train_file, registered_tiny_model):
    _, key = tenant
    response = create(client, key, model=registered_tiny_model, training_file=train_file,
                      method={"type": "diff_pruning", "diff_pruning": {"stability": {"lp_ft": True}}})
    assert_error(response, 400, "stability.lp_ft is not available", param="method.diff_pruning.stability")


def test_a_good_block_is_stored_resolved_and_the_recipe_said(client, tenant, train_file, valid_file,
                                                            registered_tiny_model):
    _, key = tenant
    stability = {"n_seeds": 3, "keep": 2, "lp_ft": True, "regularizer": {"type": "smart", "lambda": 3},
                 "early_stopping": {"patience": 2, "metric": "macro_f1"}, "recipe": "mosbach"}
    response = create(client, key, model=registered_tiny_model, training_file=train_file, validation_file=valid_file,
                      method={"type": "lora", "lora": {"r": 4, "stability": stability}})
    assert response.status_code == 200, response.text
    shown = response.json()["method"]["lora"]
    assert shown["stability"]["regularizer"] == {"type": "smart", "eps": 1e-5, "lambda": 3.0, "noise": "normal"}
    assert shown["stability"]["discard_after"] == 0.25 and shown["stability"]["layerwise_lr_decay"] is None
    hp = shown["hyperparameters"]
    lora_rate = get_strategy("lora").auto.learning_rate  # Mosbach's 2e-5/5e-5 of the method's own rate
    assert hp["learning_rate"] == pytest.approx(0.4 * lora_rate) and hp["learning_rate_multiplier"] == pytest.approx(1.0)
    assert hp["warmup_ratio"] == 0.1 and hp["n_epochs"] == 20
    events = client.get(f"/v1/fine_tuning/jobs/{response.json()['id']}/events", headers=auth(key)).json()["data"]
    assert any("Mosbach et al. 2021 recipe" in e["message"] for e in events)


def test_a_worker_runs_seeds_with_lp_ft_and_r3f(client, tenant, train_file, valid_file, registered_tiny_model):
    """Through the real worker path, the two seeds side by side in child processes: job-wide step numbers
    (checkpoint rows are unique per step), every seed's events tagged, progress against the whole job, the
    winner's artifact."""
    from app.core.db import session_scope
    from app.jobs.progress import jobs_progress
    from app.models import Job
    from workers.tasks.run_job import execute

    _, key = tenant
    stability = {"n_seeds": 2, "keep": 1, "lp_ft": True, "regularizer": {"type": "r3f"}, "parallel_seeds": 2}
    job = create(client, key, model=registered_tiny_model, training_file=train_file, validation_file=valid_file,
                 seed=4, method={"type": "bitfit", "bitfit": {"stability": stability, "hyperparameters": {
                     "n_epochs": 2, "batch_size": 8}}}).json()
    assert execute(job["id"]) == "succeeded"
    done = client.get(f"/v1/fine_tuning/jobs/{job['id']}", headers=auth(key)).json()
    events, after = [], ""
    while page := client.get(f"/v1/fine_tuning/jobs/{job['id']}/events?limit=100{after}", headers=auth(key)).json():
        events += page["data"]
        if not page["has_more"]:
            break
        after = f"&after={page['data'][-1]['id']}"
    metrics = [e["data"] for e in events if e["type"] == "metrics" and "seed" in (e.get("data") or {})]
    assert {m["seed"] for m in metrics} == {4, 4 + 10_007}
    steps = [m["step"] for m in metrics if "train_loss" in m]
    assert len(steps) == len(set(steps))  # job-wide: no two seeds share a step
    checkpoints = client.get(f"/v1/fine_tuning/jobs/{job['id']}/checkpoints?limit=100", headers=auth(key)).json()
    numbers = [c["step_number"] for c in checkpoints["data"]]
    assert len(numbers) == len(set(numbers)) >= 4
    assert any("Seeds: kept" in e["message"] and "saved" in e["message"] for e in events)
    assert any("2 at a time, each in its own process" in e["message"] for e in events)
    assert done["status"] == "succeeded"
    with session_scope() as db:
        [progress] = jobs_progress(db, [db.get(Job, job["id"])]).values()
    assert progress.total_steps == 2 * (3 + 2) + 1 * 4  # per seed a 3-step probe; 6 steps, discarded after 2

"""Phased jobs on two processes (torchrun, gloo on CPU): stability's seeds one after another with LP-FT, adaptive's
TAPT then a task method, multitask then a task method. Each 2-process job is paused in its last phase (a
PostgreSQL trigger asks for the pause once its Nth checkpoint is recorded), resumed, and its artifact matches
the same job run uninterrupted (same global batch): every rank resumes from the same phase. Before the pause,
adaptive's and multitask's ranks > 0 already trained the last phase on the encoder rank 0 saved (only rank 0's
save_pretrained writes weights), so a wrong hand-over would fail the first attempt or the comparison. The loaded
artifact reproduces its own eval/predictions.jsonl and the reference's logits.

The reference runs on one process for all three. Adaptive's MLM loss is a mean over the batch's masked tokens,
so each rank's share is weighted by its masked tokens (app.training.batching.loss_units); weighted by rows, as
before, the two ranks averaged their shards' token means and the weights ended 0.02 from one process's after 8
steps at lr 1e-2.

Tolerance: the ranks add their gradient shares in another order than one process sums a batch (float32
rounding, ~1e-7 relative per step); after a few dozen AdamW steps at lr 1e-2 this stays well under 1e-4 in any
weight, while a rank training on other weights or another phase's encoder moves them by ~1e-2."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from sqlalchemy import text

from app.core.db import session_scope
from app.models import Job
from tests.api.helpers import auth, classification_rows, jsonl, upload
from tests.workers.test_multiprocess import still_model  # noqa: F401  (a fixture)

PAUSE_TRIGGER = [  # one statement each: psycopg sends parameterised (extended protocol) queries one at a time
    "CREATE TABLE IF NOT EXISTS test_pause_at (job_id text PRIMARY KEY, checkpoints int NOT NULL)",
    """CREATE OR REPLACE FUNCTION test_pause_at_checkpoint() RETURNS trigger AS $$
    BEGIN
      IF NEW.message LIKE 'Checkpoint saved%' AND (
          SELECT count(*) FROM job_events WHERE job_id = NEW.job_id AND message LIKE 'Checkpoint saved%'
        ) = (SELECT checkpoints FROM test_pause_at WHERE job_id = NEW.job_id) THEN
        UPDATE jobs SET status = 'pausing' WHERE id = NEW.job_id AND status = 'running';
      END IF;
      RETURN NEW;
    END $$ LANGUAGE plpgsql""",
    "DROP TRIGGER IF EXISTS test_pause_at_checkpoint ON job_events",
    """CREATE TRIGGER test_pause_at_checkpoint AFTER INSERT ON job_events
      FOR EACH ROW EXECUTE FUNCTION test_pause_at_checkpoint()""",
]
SCHEDULE = {"hyperparameters": {"n_epochs": 2, "batch_size": 8, "learning_rate": 1e-2}}
LORA = {"type": "lora", "lora": {"r": 4, "lora_dropout": 0.0, **SCHEDULE}}


@pytest.fixture
def pause_trigger(database):
    with session_scope() as db:
        for statement in PAUSE_TRIGGER:
            db.execute(text(statement))
    yield
    with session_scope() as db:
        db.execute(text("DROP TRIGGER IF EXISTS test_pause_at_checkpoint ON job_events"))


def _weights(root: Path) -> dict[str, torch.Tensor]:
    """Every tensor of every safetensors file in an artifact, keyed by file and name."""
    return {f"{path.relative_to(root)}:{name}": value for path in sorted(root.rglob("*.safetensors"))
            for name, value in load_file(path).items()}


def _checkpoints_saved(job_id: str) -> int:
    with session_scope() as db:
        return db.execute(text("SELECT count(*) FROM job_events WHERE job_id = :job AND message LIKE "
                               "'Checkpoint saved%'"), {"job": job_id}).scalar_one()


def _methods(client, key: str) -> dict[str, dict]:
    labelled = [upload(client, key, jsonl(classification_rows(16, labels=labels))).json()["id"]
                for labels in (("pos", "neg"), ("a", "b", "c"))]
    tasks = [{"name": "two", "training_file": labelled[0]}, {"name": "three", "training_file": labelled[1]}]
    return {
        "stability": {"type": "lora", "lora": {**LORA["lora"], "stability": {"n_seeds": 2, "keep": 1,
                                                                             "discard_after": 0.5, "lp_ft": True}}},
        "adaptive": {"type": "adaptive", "adaptive": {"tapt": True, **SCHEDULE, "then": LORA}},
        "multitask": {"type": "multitask", "multitask": {"tasks": tasks, "then": LORA, "hyperparameters": {
            **SCHEDULE["hyperparameters"], "learning_rate": 4e-3}}},  # 1e-2: a stored multiplier over 100, refused
    }


def _logits(row: Job, examples: list[dict]) -> torch.Tensor:
    """The artifact loaded as its README says (over its own encoder/ when it ships one, else the base) and its
    logits on `examples`; it must also reproduce the logits rank 0 wrote into eval/predictions.jsonl."""
    from app.artifacts.service import local_artifact_dir
    from app.base_models.service import local_model_dir
    from app.models import BaseModel
    from app.training.artifacts import load_classifier, predict

    artifact = local_artifact_dir(row)
    if (artifact / "encoder").is_dir():
        base = artifact / "encoder"
    else:
        with session_scope() as db:
            base = local_model_dir(db.get(BaseModel, row.model))
    model, tokenizer, labels = load_classifier(artifact, base)
    logits = torch.tensor([p["logits"] for p in predict(model, tokenizer, examples, labels)])
    stored = torch.tensor([json.loads(line)["logits"]
                           for line in (artifact / "eval" / "predictions.jsonl").read_text().splitlines()])
    assert torch.allclose(logits, stored, atol=1e-5)
    return logits


@pytest.mark.parametrize(("kind", "reference"), [("stability", 1), ("adaptive", 1), ("multitask", 1)])
def test_a_phased_job_on_two_processes_pauses_resumes_and_matches_one_process(
        client, tenant, still_model, quiet_queue, pause_trigger, monkeypatch, kind, reference):  # noqa: F811
    from app.artifacts.service import local_artifact_dir
    from workers.tasks.run_job import execute

    monkeypatch.setenv("TUNEFORGE_STOP_POLL_INTERVAL", "0")  # the ranks read it: rank 0 sees the pause at once
    key = tenant[1]
    train = upload(client, key, jsonl(classification_rows(16))).json()["id"]
    valid_rows = classification_rows(8)
    valid = upload(client, key, jsonl(valid_rows)).json()["id"]
    method = _methods(client, key)[kind]

    def create(**extra) -> str:
        response = client.post("/v1/fine_tuning/jobs", headers=auth(key), json={
            "model": still_model, "training_file": train, "validation_file": valid, "seed": 3, "method": method,
            **extra})
        assert response.status_code == 200, response.text
        return response.json()["id"]

    def artifact(job_id: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        with session_scope() as db:
            row = db.get(Job, job_id)
            db.expunge(row)
        return _weights(local_artifact_dir(row)), _logits(row, valid_rows)

    # uninterrupted; its suffix keeps it apart from the 2-process job (identical bodies within minutes are one job)
    single = create(resources={"processes": reference}, suffix="reference")
    assert execute(single) == "succeeded"
    (one, one_logits), saved = artifact(single), _checkpoints_saved(single)
    parallel = create(resources={"processes": 2})
    with session_scope() as db:  # the pause comes once the last phase has checkpointed (the last but one save)
        db.execute(text("INSERT INTO test_pause_at VALUES (:job, :n)"), {"job": parallel, "n": saved - 1})
    assert execute(parallel) == "paused"
    assert client.post(f"/v1/fine_tuning/jobs/{parallel}/resume", headers=auth(key)).status_code == 200
    assert execute(parallel) == "succeeded"
    two, two_logits = artifact(parallel)
    assert two.keys() == one.keys() and one
    assert max((two[k].float() - one[k].float()).abs().max().item() for k in one) < 1e-4
    assert torch.allclose(two_logits, one_logits, atol=1e-4)
    with session_scope() as db:
        messages = db.execute(text("SELECT message FROM job_events WHERE job_id = :job"),
                              {"job": parallel}).scalars().all()
    assert any("data parallel over 2 processes" in m for m in messages)
    assert any(m.startswith("Job paused") for m in messages)

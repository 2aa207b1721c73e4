"""Chains and multitask through the real service (`tuneforge api` + `tuneforge worker` processes).

Job A (supervised) → job B (LoRA) naming A's fine_tuned_model: B starts from A's encoder, registered as
encoder:<A>; B's artifacts are downloaded, and in a fresh process the lineage is replayed from A's
downloaded artifact and the root base (materialize_encoder) to the very encoder B names by hash, over
which B's adapter reproduces B's own validation logits. Multitask → then: the encoder is registered as
multitask:<job>, the then task's artifact predicts through /v1/predictions, and a later job names it.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.api.helpers import classification_rows
from tests.e2e.test_service import download_artifacts, run_job, upload

ROOT = Path(__file__).resolve().parents[2]
SCHEDULE = {"hyperparameters": {"n_epochs": 2, "batch_size": 8, "max_length": 16}}
REPLAY = """
import json, sys
from pathlib import Path
from app.training.artifacts import load_classifier, predict, read_manifest
from app.training.lineage import materialize_encoder
a, b, root, out = (Path(p) for p in sys.argv[1:5])
sha = materialize_encoder(a, root, out)
model, tokenizer, labels = load_classifier(b, out)
rows = [json.loads(l) for l in open(b / "eval" / "predictions.jsonl")]
valid = [json.loads(l) for l in open(sys.argv[5])]
logits = [p["logits"] for p in predict(model, tokenizer, valid, labels)]
worst = max(abs(x - y) for got, row in zip(logits, rows, strict=True) for x, y in zip(got, row["logits"], strict=True))
print(json.dumps({"sha": sha, "worst": worst, "lineage": read_manifest(b)["lineage"]}))
"""


def test_a_job_starts_from_an_earlier_jobs_model_and_reloads_in_a_fresh_process(service, openai_client, tiny_model_dir,
                                                                                tmp_path):
    a = run_job(openai_client, "tiny-bert", {"type": "supervised", "supervised": SCHEDULE},
                rows=classification_rows(32, labels=("x", "y", "z")), valid_rows=classification_rows(9, labels=("x", "y", "z")))
    assert a.status == "succeeded", a.error
    valid = classification_rows(8)
    b = run_job(openai_client, a.fine_tuned_model, {"type": "lora", "lora": {"r": 4, **SCHEDULE}}, valid_rows=valid)
    assert b.status == "succeeded", b.error
    assert b.model == a.id and b.fine_tuned_model.startswith(f"ft:{a.id}:")
    events = [e.message for e in openai_client.fine_tuning.jobs.list_events(b.id, limit=100).data]
    assert any(m.startswith(f"Starting from job {a.id}'s encoder (supervised") for m in events)
    assert f"encoder:{a.id}" in {m.id for m in openai_client.models.list().data}

    download_artifacts(service, openai_client, a.id, tmp_path / "a")
    download_artifacts(service, openai_client, b.id, tmp_path / "b")
    (tmp_path / "valid.jsonl").write_text("".join(json.dumps(r) + "\n" for r in valid))
    out = subprocess.run([sys.executable, "-c", REPLAY, str(tmp_path / "a"), str(tmp_path / "b"), str(tiny_model_dir),
                          str(tmp_path / "encoder"), str(tmp_path / "valid.jsonl")],
                         cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-3000:]
    fresh = json.loads(out.stdout.strip().splitlines()[-1])
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert fresh["sha"] == manifest["base_model"]["sha256"] == fresh["lineage"][-1]["sha256"]
    assert [s.get("job") for s in fresh["lineage"]] == [None, a.id] and fresh["lineage"][0]["model"] == "tiny-bert"
    assert fresh["worst"] < 1e-5


def test_multitask_then_a_task_and_a_later_job_from_its_encoder(service, openai_client):
    import httpx

    tasks = [{"name": name, "training_file": upload(openai_client, classification_rows(24, labels=labels)),
              "validation_file": upload(openai_client, classification_rows(6, labels=labels))}
             for name, labels in (("two", ("pos", "neg")), ("three", ("a", "b", "c")))]
    method = {"type": "multitask", "multitask": {"tasks": tasks, "sampling": "temperature", "temperature": 2.0,
                                                 **SCHEDULE, "then": {"type": "bitfit", "bitfit": SCHEDULE}}}
    job = run_job(openai_client, "tiny-bert", method)
    assert job.status == "succeeded", job.error
    events = openai_client.fine_tuning.jobs.list_events(job.id, limit=100).data
    assert any("eval_three_accuracy" in (e.data or {}) for e in events), "per-task metrics in the events"
    assert any(e.message.startswith("Multitask: two 24 rows") for e in events)
    encoder = f"multitask:{job.id}"
    assert encoder in {m.id for m in openai_client.models.list().data}
    predicted = httpx.post(f"{service.url}/v1/predictions", headers={"Authorization": f"Bearer {openai_client.api_key}"},
                           json={"model": job.fine_tuned_model, "input": ["good great", "bad awful"]}, timeout=60)
    assert predicted.status_code == 200, predicted.text
    later = run_job(openai_client, encoder, {"type": "lora", "lora": {"r": 4, **SCHEDULE}}, valid_rows=False)
    assert later.status == "succeeded", later.error

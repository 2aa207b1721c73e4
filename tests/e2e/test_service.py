"""End to end with the official `openai` client against real api + worker processes."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import classification_rows, jsonl
from tests.e2e.conftest import wait_for

FINAL = ("succeeded", "failed", "cancelled")


def upload(client, rows) -> str:
    return client.files.create(file=("train.jsonl", io.BytesIO(jsonl(rows))), purpose="fine-tune").id


def run_job(client, model: str, method: dict, rows=None, valid_rows=None, timeout: float = 240):
    train = upload(client, rows or classification_rows(32))
    valid = upload(client, valid_rows or classification_rows(8)) if valid_rows is not False else None
    job = client.fine_tuning.jobs.create(model=model, training_file=train, validation_file=valid,
                                         seed=3, extra_body={"method": method})
    assert job.status == "queued"
    return wait_for(lambda: client.fine_tuning.jobs.retrieve(job.id), lambda j: j.status in FINAL, timeout)


def download_artifacts(service, client, job_id: str, dest: Path) -> list[dict]:
    headers = {"Authorization": f"Bearer {client.api_key}"}
    listing = httpx.get(f"{service.url}/v1/fine_tuning/jobs/{job_id}/artifacts", headers=headers).json()["data"]
    import hashlib

    for item in listing:
        body = httpx.get(f"{service.url}/v1/fine_tuning/jobs/{job_id}/artifacts/{item['name']}", headers=headers)
        assert body.status_code == 200 and hashlib.sha256(body.content).hexdigest() == item["sha256"]
        assert len(body.content) == item["bytes"]
        (dest / item["name"]).parent.mkdir(parents=True, exist_ok=True)
        (dest / item["name"]).write_bytes(body.content)
    return listing


LOAD_AND_PREDICT = textwrap.dedent("""
    import json, sys, torch
    from pathlib import Path
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    art, base = Path(sys.argv[1]), sys.argv[2]
    manifest = json.loads((art / "manifest.json").read_text())
    labels = manifest["labels"]
    kw = dict(num_labels=len(labels), id2label=dict(enumerate(map(str, labels))),
              label2id={str(l): i for i, l in enumerate(labels)})
    if (art / "adapter").exists():
        from peft import PeftModel
        model = PeftModel.from_pretrained(AutoModelForSequenceClassification.from_pretrained(base, **kw), art / "adapter")
    elif (art / "model").exists() and manifest.get("settings", {}).get("pooling") != "mean":
        model = AutoModelForSequenceClassification.from_pretrained(art / "model")
    else:
        from app.training.artifacts import load_classifier
        model = load_classifier(art, Path(base))[0]
    model.eval()
    tok = AutoTokenizer.from_pretrained(base)
    rows = [json.loads(l) for l in open(sys.argv[3]) if l.strip()]
    preds = [json.loads(l) for l in open(art / "eval" / "predictions.jsonl")]
    worst = 0.0
    for row, pred in zip(rows, preds):
        enc = tok(row["text"], return_tensors="pt", truncation=True, max_length=manifest["hyperparameters"]["max_length"])
        with torch.no_grad():
            logits = model(**enc).logits[0].tolist()
        worst = max(worst, max(abs(a - b) for a, b in zip(logits, pred["logits"])))
    print(json.dumps({"max_abs_diff": worst, "n": len(preds)}))
""")


def reload_in_fresh_process(artifact_dir: Path, base_dir: Path, valid_rows: list[dict]) -> dict:
    """LOAD_AND_PREDICT in a new interpreter: {"max_abs_diff" from the job's predictions, "n"}."""
    valid_path = artifact_dir / "valid.jsonl"
    valid_path.write_bytes(jsonl(valid_rows))
    out = subprocess.run([sys.executable, "-c", LOAD_AND_PREDICT, str(artifact_dir), str(base_dir), str(valid_path)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("method", [
    {"type": "lora", "lora": {"r": 4, "hyperparameters": {"n_epochs": 2, "batch_size": 8}}},
    {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 8}}},
    {"type": "bitfit", "bitfit": {"hyperparameters": {"n_epochs": 1, "batch_size": 8}}},
])
def test_job_runs_to_success_and_artifact_loads_in_fresh_process(service, openai_client, tiny_model_dir,
                                                                   tmp_path, method):
    valid_rows = classification_rows(8)
    job = run_job(openai_client, "tiny-bert", method, valid_rows=valid_rows)
    assert job.status == "succeeded", job.error
    assert job.trained_tokens and job.trained_tokens > 0 and job.fine_tuned_model.startswith("ft:tiny-bert:")
    events = openai_client.fine_tuning.jobs.list_events(job.id, limit=100).data
    metrics = [e for e in events if e.type == "metrics"]
    assert metrics and all("step" in e.data for e in metrics)
    assert any("eval_accuracy" in e.data and "eval_macro_f1" in e.data for e in metrics)
    checkpoints = openai_client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert checkpoints and all(c.step_number > 0 for c in checkpoints)
    listing = download_artifacts(service, openai_client, job.id, tmp_path)
    names = {a["name"] for a in listing}
    assert "manifest.json" in names and "eval/predictions.jsonl" in names
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["base_model"]["id"] == "tiny-bert" and len(manifest["base_model"]["sha256"]) == 64
    result = reload_in_fresh_process(tmp_path, tiny_model_dir, valid_rows)
    assert result["n"] == len(valid_rows) and result["max_abs_diff"] < 1e-4
    assert job.fine_tuned_model in [m.id for m in openai_client.models.list().data]


def test_lora_on_real_minilm(service, openai_client, tmp_path):
    method = {"type": "lora", "lora": {"hyperparameters": {"n_epochs": 1, "batch_size": 8, "max_length": 32}}}
    job = run_job(openai_client, "minilm-l6", method, rows=classification_rows(16), valid_rows=False)
    assert job.status == "succeeded", job.error
    names = {a["name"] for a in download_artifacts(service, openai_client, job.id, tmp_path)}
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors", "manifest.json"} <= names
    assert sum((tmp_path / n).stat().st_size for n in names) < 5 * 1024 * 1024


def test_cancel_mid_run_then_worker_serves_next_job(service, openai_client):
    train = upload(openai_client, classification_rows(2000))
    job = openai_client.fine_tuning.jobs.create(
        model="tiny-bert", training_file=train,
        extra_body={"method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 50, "batch_size": 4}}}})
    wait_for(lambda: openai_client.fine_tuning.jobs.list_events(job.id, limit=50).data,
             lambda evs: any(e.type == "metrics" for e in evs), timeout=120)
    cancelled = openai_client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    wait_for(lambda: openai_client.fine_tuning.jobs.list_events(job.id, limit=50).data,
             lambda evs: any("Training stopped" in e.message for e in evs), timeout=60)
    assert openai_client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    follow = run_job(openai_client, "tiny-bert", {"type": "bitfit"}, valid_rows=False)
    assert follow.status == "succeeded"


def test_failed_job_reports_error_and_worker_survives(service, openai_client):
    """Settings the base cannot take never reach the worker (a 400 at submission); a job whose training
    file went bad on disk after submission fails in the worker, says why, and the worker goes on."""
    import openai

    from app.core.config import get_settings

    bad = {"type": "lora", "lora": {"target_modules": ["no_such_module"]}}
    with pytest.raises(openai.BadRequestError) as refused:
        run_job(openai_client, "tiny-bert", bad, valid_rows=False)
    assert "no_such_module" in str(refused.value) and "method.lora.target_modules" in str(refused.value)

    train = upload(openai_client, classification_rows(32))
    long_schedule = {"hyperparameters": {"n_epochs": 50, "batch_size": 4}}  # still training when the pause lands
    job = openai_client.fine_tuning.jobs.create(model="tiny-bert", training_file=train, seed=3,
                                                extra_body={"method": {"type": "bitfit", "bitfit": long_schedule}})
    openai_client.post(f"/fine_tuning/jobs/{job.id}/pause", cast_to=object)  # queued or running: either pauses
    wait_for(lambda: openai_client.fine_tuning.jobs.retrieve(job.id), lambda j: j.status == "paused")
    [stored] = get_settings().files_dir.glob(f"*/{train}")
    stored.write_bytes(stored.read_bytes().replace(b"a", b"b", 1))  # same size, other bytes
    openai_client.post(f"/fine_tuning/jobs/{job.id}/resume", cast_to=object)
    failed = wait_for(lambda: openai_client.fine_tuning.jobs.retrieve(job.id), lambda j: j.status in FINAL)
    assert failed.status == "failed" and failed.error.code == "file_corrupted" and train in failed.error.message
    follow = run_job(openai_client, "tiny-bert", {"type": "bitfit"}, valid_rows=False)
    assert follow.status == "succeeded"


def test_adaptive_encoder_becomes_the_tenants_private_base_model(service, openai_client, tmp_path):
    """TAPT then BitFit in one job; the adapted encoder is registered as a model only its tenant
    sees and can fine-tune, as a later job of the same tenant does."""
    import openai

    from tests.conftest import new_tenant

    schedule = {"hyperparameters": {"n_epochs": 1, "batch_size": 8, "max_length": 16}}
    method = {"type": "adaptive", "adaptive": {"tapt": True, "mlm": {"mask_rate": 0.3, "unit": "whole_word"},
                                               **schedule, "then": {"type": "bitfit", "bitfit": schedule}}}
    job = run_job(openai_client, "tiny-bert", method)
    assert job.status == "succeeded", job.error
    names = {a["name"] for a in download_artifacts(service, openai_client, job.id, tmp_path)}
    assert {"encoder/config.json", "encoder/model.safetensors", "delta/delta.safetensors", "manifest.json"} <= names
    encoder = f"adapted:{job.id}"
    assert encoder in {m.id for m in openai_client.models.list().data}

    _, other_key = new_tenant()
    other = openai.OpenAI(base_url=f"{service.url}/v1", api_key=other_key, max_retries=0)
    assert encoder not in {m.id for m in other.models.list().data}
    with pytest.raises(openai.NotFoundError, match="Unknown base model"):
        other.fine_tuning.jobs.create(model=encoder, training_file=upload(other, classification_rows(16)))

    follow = run_job(openai_client, encoder, {"type": "lora", "lora": {"r": 4, **schedule}}, valid_rows=False)
    assert follow.status == "succeeded", follow.error

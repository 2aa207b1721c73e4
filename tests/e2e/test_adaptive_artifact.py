"""An adaptive job's artifact loads as a tenant gets it (issue 16): TAPT then LoRA through the real
service, `artifacts.tar` downloaded, and in a fresh process `load_classifier` over the downloaded
`encoder/` and over the registered `adapted:<job>` model gives the job's own predictions. The
manifest names the hash of the encoder as published (not the checkpoint copy with phase.json)."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx

from app.fsio import directory_sha256
from tests.api.helpers import classification_rows, jsonl
from tests.e2e.test_service import run_job

ROOT = Path(__file__).resolve().parents[2]
LOAD_BOTH = """
import json, sys
from pathlib import Path
import torch
from app.training.artifacts import load_classifier
art, registered, rows = Path(sys.argv[1]), Path(sys.argv[2]), [json.loads(l) for l in open(sys.argv[3])]
preds = [json.loads(l) for l in open(art / "eval" / "predictions.jsonl")]
worst = {}
for name, base in (("downloaded", art / "encoder"), ("registered", registered)):
    model, tokenizer, labels = load_classifier(art, base)
    worst[name] = 0.0
    for row, pred in zip(rows, preds, strict=True):
        with torch.no_grad():
            logits = model(**tokenizer(row["text"], return_tensors="pt", truncation=True)).logits[0].tolist()
        worst[name] = max(worst[name], *(abs(a - b) for a, b in zip(logits, pred["logits"], strict=True)))
print(json.dumps({**worst, "n": len(preds)}))
"""


def registered_path(model_id: str) -> Path:
    from app.core.db import session_scope
    from app.models import BaseModel

    with session_scope() as db:
        return Path(db.get(BaseModel, model_id).path)


def test_tapt_then_lora_artifact_loads_over_its_encoder_in_a_fresh_process(service, openai_client, tmp_path):
    schedule = {"hyperparameters": {"n_epochs": 1, "batch_size": 8, "max_length": 16}}
    valid = classification_rows(8)
    method = {"type": "adaptive", "adaptive": {"tapt": True, **schedule,
                                               "then": {"type": "lora", "lora": {"r": 4, **schedule}}}}
    job = run_job(openai_client, "tiny-bert", method, valid_rows=valid)
    assert job.status == "succeeded", job.error

    body = httpx.get(f"{service.url}/v1/fine_tuning/jobs/{job.id}/artifacts.tar",
                     headers={"Authorization": f"Bearer {openai_client.api_key}"}, timeout=60)
    assert body.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(body.content)) as tar:
        tar.extractall(tmp_path, filter="data")
    folder = tmp_path / job.id
    assert not (folder / "encoder" / "phase.json").exists()
    manifest = json.loads((folder / "manifest.json").read_text())
    registered = registered_path(f"adapted:{job.id}")
    assert manifest["base_model"]["id"] == f"adapted:{job.id}"
    assert manifest["base_model"]["sha256"] == directory_sha256(folder / "encoder") == directory_sha256(registered)

    (tmp_path / "valid.jsonl").write_bytes(jsonl(valid))
    done = subprocess.run([sys.executable, "-c", LOAD_BOTH, str(folder), str(registered), str(tmp_path / "valid.jsonl")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["n"] == len(valid)
    assert result["downloaded"] <= 1e-5 and result["registered"] <= 1e-5, result

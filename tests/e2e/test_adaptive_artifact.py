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
import pytest

from app.fsio import directory_sha256
from tests.api.helpers import classification_rows, jsonl
from tests.e2e.test_service import run_job

ROOT = Path(__file__).resolve().parents[2]
LOAD_BOTH = """
import json, sys
from pathlib import Path
import torch
from app.training.artifacts import load_classifier
registered, rows = Path(sys.argv[1]), [json.loads(l) for l in open(sys.argv[2])]
worst = {}
for art, downloaded in zip(map(Path, sys.argv[3::2]), map(Path, sys.argv[4::2])):
    preds = [json.loads(l) for l in open(art / "eval" / "predictions.jsonl")]
    assert len(preds) == len(rows)
    for name, base in ((f"{art.name} downloaded", downloaded), (f"{art.name} registered", registered)):
        model, tokenizer, labels = load_classifier(art, base)
        worst[name] = 0.0
        for row, pred in zip(rows, preds, strict=True):
            with torch.no_grad():
                logits = model(**tokenizer(row["text"], return_tensors="pt", truncation=True)).logits[0].tolist()
            worst[name] = max(worst[name], *(abs(a - b) for a, b in zip(logits, pred["logits"], strict=True)))
print(json.dumps(worst))
"""


def registered_path(model_id: str) -> Path:
    from app.core.db import session_scope
    from app.models import BaseModel

    with session_scope() as db:
        return Path(db.get(BaseModel, model_id).path)


def download(service, openai_client, job_id: str, tmp_path: Path) -> Path:
    body = httpx.get(f"{service.url}/v1/fine_tuning/jobs/{job_id}/artifacts.tar",
                     headers={"Authorization": f"Bearer {openai_client.api_key}"}, timeout=60)
    assert body.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(body.content)) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / job_id


def assert_reloads_in_a_fresh_process(registered: Path, valid: list[dict], tmp_path: Path,
                                      *artifacts: tuple[Path, Path]) -> None:
    """Each (artifact, its base as downloaded) gives the job's own predictions over that base and over
    the registered model, in one fresh process."""
    (tmp_path / "valid.jsonl").write_bytes(jsonl(valid))
    done = subprocess.run([sys.executable, "-c", LOAD_BOTH, str(registered), str(tmp_path / "valid.jsonl"),
                           *(str(p) for pair in artifacts for p in pair)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    worst = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(worst) == 2 * len(artifacts) and max(worst.values()) <= 1e-5, worst


SCHEDULE = {"hyperparameters": {"n_epochs": 1, "batch_size": 8, "max_length": 16}}


@pytest.mark.parametrize("peft", [None, "lora"])
def test_tapt_then_lora_artifact_loads_over_its_encoder_in_a_fresh_process(peft, service, openai_client, tmp_path):
    """With peft "lora" the encoder is the base's id + a LoRA adapter (no weights file of its own) and the
    same holds: merged in memory, it reproduces the job's predictions; a later job names it as model."""
    valid = classification_rows(8)
    method = {"type": "adaptive", "adaptive": {"tapt": True, **SCHEDULE, **({"peft": peft} if peft else {}),
                                               "then": {"type": "lora", "lora": {"r": 4, **SCHEDULE}}}}
    job = run_job(openai_client, "tiny-bert", method, valid_rows=valid)
    assert job.status == "succeeded", job.error
    folder = download(service, openai_client, job.id, tmp_path)
    assert not (folder / "encoder" / "phase.json").exists()
    assert (folder / "encoder" / "model.safetensors").exists() == (peft is None)
    manifest = json.loads((folder / "manifest.json").read_text())
    registered = registered_path(f"adapted:{job.id}")
    assert manifest["base_model"]["id"] == f"adapted:{job.id}"
    assert manifest["base_model"]["sha256"] == directory_sha256(folder / "encoder") == directory_sha256(registered)
    artifacts = [(folder, folder / "encoder")]
    if peft:
        assert sum(f.stat().st_size for f in registered.rglob("*") if f.is_file()) < 100_000  # no encoder copy
        later = run_job(openai_client, f"adapted:{job.id}", {"type": "lora", "lora": {"r": 4, **SCHEDULE}},
                        valid_rows=valid)
        assert later.status == "succeeded", later.error
        artifacts.append((download(service, openai_client, later.id, tmp_path / "later"), folder / "encoder"))
        served = httpx.post(f"{service.url}/v1/predictions",
                            headers={"Authorization": f"Bearer {openai_client.api_key}"}, timeout=60,
                            json={"model": later.fine_tuned_model, "input": [r["text"] for r in valid]})
        assert served.status_code == 200, served.text  # served over base + adapter, merged in memory
        want = [json.loads(line)["predicted"] for line in (artifacts[-1][0] / "eval" / "predictions.jsonl").open()]
        assert [p["label"] for p in served.json()["data"]] == want
    assert_reloads_in_a_fresh_process(registered, valid, tmp_path, *artifacts)

"""Merged export end to end: real `tuneforge api` + `tuneforge worker` processes train a LoRA job,
merge it on request, serve the merged files, and plain transformers reproduces the job's predictions."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap

import httpx

from tests.api.helpers import classification_rows, jsonl
from tests.e2e.conftest import wait_for
from tests.e2e.test_service import download_artifacts, run_job

PLAIN_LOAD = textwrap.dedent("""
    import json, sys, torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    merged, rows, preds = sys.argv[1], sys.argv[2], sys.argv[3]
    model = AutoModelForSequenceClassification.from_pretrained(merged).eval()
    tok = AutoTokenizer.from_pretrained(merged)
    rows = [json.loads(l) for l in open(rows) if l.strip()]
    preds = [json.loads(l) for l in open(preds)]
    worst = 0.0
    for row, pred in zip(rows, preds, strict=True):
        with torch.no_grad():
            logits = model(**tok(row["text"], return_tensors="pt", truncation=True)).logits[0].tolist()
        worst = max(worst, max(abs(a - b) for a, b in zip(logits, pred["logits"])))
    assert not [m for m in ("peft", "app") if m in sys.modules]
    print(json.dumps({"max_abs_diff": worst, "n": len(preds)}))
""")


def test_export_merges_a_lora_job_and_plain_transformers_loads_it(service, openai_client, tmp_path):
    valid_rows = classification_rows(8)
    method = {"type": "lora", "lora": {"r": 4, "hyperparameters": {"n_epochs": 2, "batch_size": 8,
                                                                   "learning_rate": 2e-2}}}
    job = run_job(openai_client, "tiny-bert", method, valid_rows=valid_rows)
    assert job.status == "succeeded", job.error
    headers = {"Authorization": f"Bearer {openai_client.api_key}"}
    export_url = f"{service.url}/v1/fine_tuning/jobs/{job.id}/export"
    first = httpx.post(export_url, headers=headers)
    assert first.status_code == 202 and first.json()["status"] in ("queued", "running"), first.text
    done = wait_for(lambda: httpx.get(export_url, headers=headers).json(),
                    lambda e: e["status"] in ("succeeded", "failed"), timeout=120)
    assert done["status"] == "succeeded", done["error"]
    again = httpx.post(export_url, headers=headers)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]

    merged = tmp_path / "merged"
    merged.mkdir()
    for item in done["files"]:
        body = httpx.get(f"{service.url}/v1/fine_tuning/jobs/{job.id}/artifacts/{item['name']}", headers=headers)
        assert body.status_code == 200 and hashlib.sha256(body.content).hexdigest() == item["sha256"]
        assert body.headers["x-checksum-sha256"] == item["sha256"]
        (merged / item["name"].removeprefix("merged/")).write_bytes(body.content)
    assert (merged / "model.safetensors").is_file() and (merged / "config.json").is_file()
    download_artifacts(service, openai_client, job.id, tmp_path / "artifact")
    (tmp_path / "valid.jsonl").write_bytes(jsonl(valid_rows))
    out = subprocess.run([sys.executable, "-c", PLAIN_LOAD, str(merged), str(tmp_path / "valid.jsonl"),
                          str(tmp_path / "artifact" / "eval" / "predictions.jsonl")],
                         capture_output=True, text=True, cwd="/", check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["n"] == len(valid_rows) and result["max_abs_diff"] < 1e-4

    storage = httpx.get(f"{service.url}/v1/storage", headers=headers).json()
    assert storage["merged_exports"] == {"bytes": done["bytes"], "files": len(done["files"]), "exports": 1}
    assert storage["artifacts"]["jobs"] == 1 and storage["artifacts"]["bytes"] < done["bytes"]
    assert [m["id"] for m in storage["base_models"]["data"]] == ["tiny-bert"]

"""TLM end to end: a corpus uploaded and indexed by the real worker, a `tlm` job trained by it from random
weights, its events (retrieval, S's size, FLOPs per stage beside accuracy), its artifact downloaded and
reloaded in a fresh process (its head reads the mean, pooling "auto", so through load_classifier), and the API
serving its predictions."""
from __future__ import annotations

import io
import json
import math

import httpx

from tests.api.helpers import classification_rows
from tests.e2e.conftest import wait_for
from tests.e2e.test_service import download_artifacts, reload_in_fresh_process, run_job
from tests.tiny_models import FILLER, NEGATIVE, POSITIVE

DOCUMENTS = [f"{' '.join(POSITIVE)} {FILLER[i]}" for i in range(10)] + \
            [f"{' '.join(NEGATIVE)} {FILLER[i]}" for i in range(10)] + ["table chair door window"] * 10


def test_tlm_job_retrieves_trains_from_scratch_and_serves(service, openai_client, tiny_model_dir, tmp_path):
    headers = {"Authorization": f"Bearer {openai_client.api_key}"}
    file = openai_client.files.create(file=("corpus.txt", io.BytesIO("\n".join(DOCUMENTS).encode() + b"\n")),
                                      purpose="corpus")
    corpus = httpx.post(f"{service.url}/v1/corpora", headers=headers, json={"file": file.id, "name": "toy"}).json()
    ready = wait_for(lambda: httpx.get(f"{service.url}/v1/corpora/{corpus['id']}", headers=headers).json(),
                     lambda c: c["status"] != "indexing", timeout=120)
    assert ready["status"] == "ready" and ready["documents"] == 30, ready
    schedule = {"n_epochs": 2, "batch_size": 8, "max_length": 16}
    method = {"type": "tlm", "tlm": {"corpus": corpus["id"], "preset": "tiny", "top_k": 3, "rho1": 2,
                                     "stage2_epochs": 1, "hyperparameters": schedule}}
    valid_rows = classification_rows(8)
    job = run_job(openai_client, "tiny-bert", method, rows=classification_rows(16), valid_rows=valid_rows)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model.startswith("ft:tiny-bert:")

    events = openai_client.fine_tuning.jobs.list_events(job.id, limit=100).data
    retrieval = next(e for e in events if e.message.startswith("TLM retrieval (bm25"))
    assert 0 < retrieval.data["documents"] <= 20 and retrieval.data["corpus_documents"] == 30  # never "table chair"
    size = next(e for e in events if e.message.startswith("TLM external data S"))
    assert size.data["external_documents"] == retrieval.data["documents"] and size.data["external_tokens"] > 0
    final = next(e for e in events if e.message.startswith("TLM finished"))
    stages = final.data["stages"]
    assert [s["stage"] for s in stages] == ["stage1", "stage2"]
    assert (stages[0]["steps"], stages[0]["external_batches"], stages[1]["steps"]) == (12, 8, 2)  # 2 x (1+2) x 2
    assert math.isclose(final.data["flops"], sum(s["flops"] for s in stages))
    assert "validation accuracy" in final.message and "FLOPs" in final.message

    names = {a["name"] for a in download_artifacts(service, openai_client, job.id, tmp_path)}
    assert {"model/model.safetensors", "retrieved.jsonl", "manifest.json", "eval/predictions.jsonl"} <= names
    rows = [json.loads(line) for line in open(tmp_path / "retrieved.jsonl")]
    assert len(rows) == 16 and all(set(r["documents"]) <= set(range(20)) for r in rows)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["method"] == "tlm" and manifest["flops"] == final.data["flops"]
    assert manifest["settings"]["pooling"] == "mean"
    result = reload_in_fresh_process(tmp_path, tiny_model_dir, valid_rows)
    assert result["n"] == len(valid_rows) and result["max_abs_diff"] < 1e-4

    answer = httpx.post(f"{service.url}/v1/predictions", headers=headers, timeout=120,
                        json={"model": job.fine_tuned_model, "input": [valid_rows[0]["text"]]})
    assert answer.status_code == 200, answer.text
    predicted = json.loads(open(tmp_path / "eval" / "predictions.jsonl").readline())
    exps = [math.exp(x - max(predicted["logits"])) for x in predicted["logits"]]
    probabilities = list(answer.json()["data"][0]["probabilities"].values())
    assert max(abs(p - e / sum(exps)) for p, e in zip(probabilities, exps, strict=True)) < 1e-4


"""One job per task type through the real service (`tuneforge api` + `tuneforge worker` processes, the
official `openai` client): NER, regression and multi-label files train, the job's events name the task
type, and POST /v1/predictions answers in that type's shape; an OpenAI chat file trains a decoder (text_to_text)."""
from __future__ import annotations

import httpx
import pytest

from tests.e2e.test_service import run_job
from tests.task_rows import multi_label_rows, ner_rows, regression_rows

CASES = {
    "token_classification": (ner_rows, {"type": "supervised"}, ["the good table was bad"], {"tags", "entities"}),
    "regression": (regression_rows, {"type": "lora", "lora": {"r": 4}}, ["good great", "bad awful"], {"value"}),
    "multi_label_classification": (multi_label_rows, {"type": "bitfit"}, ["good table"], {"labels", "probabilities"}),
}


@pytest.mark.parametrize("task", list(CASES))
def test_each_task_type_trains_and_predicts_through_the_worker(service, openai_client, task):
    rows, method, inputs, fields = CASES[task]
    method = {**method, method["type"]: {**method.get(method["type"], {}),
                                         "hyperparameters": {"n_epochs": 3, "batch_size": 8, "learning_rate": 3e-3}}}
    job = run_job(openai_client, "tiny-bert", method, rows=rows(32, 1), valid_rows=rows(8, 2))
    assert job.status == "succeeded", job.error
    events = [e.message for e in openai_client.fine_tuning.jobs.list_events(job.id, limit=100).data]
    assert any(m.startswith(f"Files validated: {task}") for m in events)
    assert any(m.startswith("Task: ") for m in events)
    response = httpx.post(f"{service.url}/v1/predictions", headers={"Authorization": f"Bearer {openai_client.api_key}"},
                          json={"model": job.fine_tuned_model, "input": inputs}, timeout=120)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert len(data) == len(inputs) and all(set(row) == {"object", "index", *fields} for row in data)


def chat_rows(n: int, seed: int) -> list[dict]:
    from tests.tiny_text_models import make_mapping_rows

    return [{"messages": [{"role": "system", "content": "answer with one word"},
                          {"role": "user", "content": row["input"]}, {"role": "assistant", "content": row["target"]}]}
            for row in make_mapping_rows(n, seed)]


def test_an_openai_chat_file_trains_a_decoder_and_predicts_what_the_job_generated(service, openai_client, tmp_path):
    """text_to_text: a tiny GPT-2 registered with `tuneforge models add` learns from {"messages": [...]} rows
    uploaded by the openai client; the API process (not the worker that trained it) and `tuneforge predict`
    generate exactly what the job's own validation generated, and that is the right answer."""
    import io
    import json

    from tests.api.helpers import jsonl
    from tests.e2e.conftest import wait_for
    from tests.tiny_text_models import make_tiny_gpt2

    assert "decoder" in service.cli("models", "add", "e2e-gpt2", str(make_tiny_gpt2(tmp_path / "gpt2")))
    assert {m.id: m.model_extra.get("kind") for m in openai_client.models.list().data}["e2e-gpt2"] == "decoder"
    train, valid = (openai_client.files.create(file=(f"{name}.jsonl", io.BytesIO(jsonl(rows))), purpose="fine-tune")
                    for name, rows in (("chat", chat_rows(48, 1)), ("chat-valid", chat_rows(6, 2))))
    job = openai_client.fine_tuning.jobs.create(
        model="e2e-gpt2", training_file=train.id, validation_file=valid.id, seed=3,
        extra_body={"method": {"type": "text_to_text", "text_to_text": {"hyperparameters": {
            "n_epochs": 15, "batch_size": 8, "learning_rate": 1e-2, "max_length": 32, "eval_every": 10_000}}}})
    job = wait_for(lambda: openai_client.fine_tuning.jobs.retrieve(job.id),
                   lambda j: j.status in ("succeeded", "failed", "cancelled"), 240)
    assert job.status == "succeeded", job.error
    events = [e.message for e in openai_client.fine_tuning.jobs.list_events(job.id, limit=100)]  # every page
    assert any(m.startswith("Files validated: chat") for m in events)
    assert any(m.startswith("Task: text-to-text on a decoder model from chat rows") for m in events)
    headers = {"Authorization": f"Bearer {openai_client.api_key}"}
    generated = httpx.get(f"{service.url}/v1/fine_tuning/jobs/{job.id}/artifacts/eval/predictions.jsonl",
                          headers=headers).text.splitlines()
    inputs = [row["messages"][1]["content"] for row in chat_rows(6, 2)]
    response = httpx.post(f"{service.url}/v1/predictions", headers=headers,
                          json={"model": job.fine_tuned_model, "input": inputs}, timeout=120)
    assert response.status_code == 200, response.text
    texts = [row["text"] for row in response.json()["data"]]
    assert texts == [json.loads(line)["generated"] for line in generated]
    assert texts == [row["messages"][2]["content"] for row in chat_rows(6, 2)]
    shown = json.loads(service.cli("predict", job.fine_tuned_model, *inputs[:2], "--json", "--url", service.url,
                                   "--api-key", openai_client.api_key))
    assert [row["text"] for row in shown["data"]] == texts[:2]

"""An OpenAI chat file through the real service (`tuneforge api` + a Celery `tuneforge worker`, the official
`openai` client): a tiny GPT-2 registered with `tuneforge models add` learns from {"messages": [...]} rows,
and `tuneforge predict` / POST /v1/predictions answer with the generated text."""
from __future__ import annotations

import io
import json

import httpx

from tests.api.helpers import jsonl
from tests.e2e.conftest import wait_for
from tests.tiny_text_models import SIGNALS, make_mapping_rows, make_tiny_gpt2

FINAL = ("succeeded", "failed", "cancelled")


def chat_rows(n: int, seed: int) -> list[dict]:
    return [{"messages": [{"role": "system", "content": "answer with one word"},
                          {"role": "user", "content": row["input"]}, {"role": "assistant", "content": row["target"]}]}
            for row in make_mapping_rows(n, seed)]


def test_a_chat_file_trains_a_decoder_and_predicts_text(service, openai_client, tmp_path):
    out = service.cli("models", "add", "e2e-gpt2", str(make_tiny_gpt2(tmp_path / "gpt2")))
    assert "decoder" in out
    kinds = {m.id: m.model_extra.get("kind") for m in openai_client.models.list().data}
    assert kinds["e2e-gpt2"] == "decoder"
    train = openai_client.files.create(file=("chat.jsonl", io.BytesIO(jsonl(chat_rows(48, 1)))), purpose="fine-tune")
    job = openai_client.fine_tuning.jobs.create(
        model="e2e-gpt2", training_file=train.id, seed=3,
        extra_body={"method": {"type": "text_to_text", "text_to_text": {
            "hyperparameters": {"n_epochs": 15, "batch_size": 8, "learning_rate": 1e-2, "max_length": 32}}}})
    job = wait_for(lambda: openai_client.fine_tuning.jobs.retrieve(job.id), lambda j: j.status in FINAL, 240)
    assert job.status == "succeeded", job.error
    events = [e.message for e in openai_client.fine_tuning.jobs.list_events(job.id, limit=100)]  # every page
    assert any(m.startswith("Files validated: chat") for m in events)
    assert any(m.startswith("Task: text-to-text on a decoder model from chat rows") for m in events)
    inputs = [row["input"] for row in make_mapping_rows(6, seed=2)]
    response = httpx.post(f"{service.url}/v1/predictions", headers={"Authorization": f"Bearer {openai_client.api_key}"},
                          json={"model": job.fine_tuned_model, "input": inputs}, timeout=120)
    assert response.status_code == 200, response.text
    texts = [row["text"] for row in response.json()["data"]]
    assert texts == [SIGNALS[text.split()[0]] for text in inputs]
    shown = json.loads(service.cli("predict", job.fine_tuned_model, *inputs[:2], "--json", "--url", service.url,
                                   "--api-key", openai_client.api_key))
    assert [row["text"] for row in shown["data"]] == texts[:2]

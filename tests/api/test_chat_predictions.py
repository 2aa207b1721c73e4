"""POST /v1/predictions with conversations: a tiny GPT-2 with a chat template fine-tuned on OpenAI chat rows (a
shared system message, a signal word in the user's turn deciding the assistant's one-word reply) answers
`{"messages": [...]}` items and bare message lists with the reply it learned, rendered with the template the
training used; bad conversations, and conversations sent to models not trained on chat rows, are 400s naming
the item and the field. Real app, PostgreSQL and training, run in this process as a worker runs it."""
from __future__ import annotations

import secrets
from dataclasses import dataclass

import pytest

from tests.api.helpers import assert_error, auth, jsonl, upload
from tests.api.test_chain_jobs import _run
from tests.api.test_jobs import create
from tests.conftest import new_tenant
from tests.tiny_text_models import make_mapping_rows, make_tiny_gpt2
from tests.training.test_text_to_text import CHAT_TEMPLATE

SYSTEM = {"role": "system", "content": "you answer in one word"}
HYPER = {"n_epochs": 30, "batch_size": 8, "learning_rate": 1e-2, "max_length": 48}


@dataclass(frozen=True)
class ChatJob:
    key: str
    model: str  # the chat job's fine_tuned_model
    plain: str  # a text_to_text job of the same decoder on {"input", "target"} rows


@pytest.fixture(scope="module")
def chat_job(database, tmp_path_factory) -> ChatJob:
    from fastapi.testclient import TestClient

    from app.base_models.service import register
    from app.core.db import session_scope
    from app.main import app

    base = f"chat-gpt2-{secrets.token_hex(3)}"
    with session_scope() as db:
        register(db, base, make_tiny_gpt2(tmp_path_factory.mktemp("chat") / base, chat_template=CHAT_TEMPLATE))
    _, key = new_tenant()
    rows = [{"messages": [SYSTEM, {"role": "user", "content": r["input"]},
                          {"role": "assistant", "content": r["target"]}]} for r in make_mapping_rows(48, seed=1)]
    with TestClient(app) as client:
        ids = []
        for file_rows, epochs in ((rows, HYPER["n_epochs"]), (make_mapping_rows(16), 1)):
            train = upload(client, key, jsonl(file_rows)).json()["id"]
            job = create(client, key, model=base, training_file=train, seed=0, method={
                "type": "text_to_text", "text_to_text": {"hyperparameters": {**HYPER, "n_epochs": epochs}}})
            assert job.status_code == 200, job.text
            done = _run(client, key, job.json()["id"])
            assert done["status"] == "succeeded", done["error"]
            ids.append(done["fine_tuned_model"])
    return ChatJob(key, *ids)


def _predict(client, key: str, model: str, inputs: list):
    return client.post("/v1/predictions", headers=auth(key), json={"model": model, "input": inputs,
                                                                   "max_new_tokens": 4})


def test_conversations_get_the_reply_the_job_learned(client, chat_job):
    rows = make_mapping_rows(12, seed=2)
    user = [{"role": "user", "content": r["input"]} for r in rows]
    inputs = [*({"messages": [m]} for m in user[:4]), *([m] for m in user[4:8]),  # object and bare list
              *({"messages": [SYSTEM, m]} for m in user[8:])]  # their own system message: the same one
    answer = _predict(client, chat_job.key, chat_job.model, inputs)
    assert answer.status_code == 200, answer.text
    texts = [row["text"] for row in answer.json()["data"]]
    assert sum(text == r["target"] for text, r in zip(texts, rows, strict=True)) >= 0.9 * len(rows), texts
    assert all("label" not in row for row in answer.json()["data"])
    plain = _predict(client, chat_job.key, chat_job.model, [r["input"] for r in rows])  # a text: the user's turn
    assert [row["text"] for row in plain.json()["data"]] == texts
    turns = [SYSTEM, user[0], {"role": "assistant", "content": "happy"}, user[1]]
    longer = _predict(client, chat_job.key, chat_job.model, [turns])
    assert longer.status_code == 200 and isinstance(longer.json()["data"][0]["text"], str)


@pytest.mark.parametrize(("item", "param", "fragment"), [
    ({"messages": [{"role": "robot", "content": "hi"}]}, "input.1.messages.0.role", "'system', 'user' or 'assistant'"),
    ([{"role": "user", "content": ["hi"]}], "input.1.messages.0.content", "string"),
    ({"messages": []}, "input.1.messages", "at least 1 item"),
    ([], "input.1.messages", "at least 1 item"),
    ({"messages": [{"role": "user", "content": "hi", "weight": 1}]}, "input.1.messages.0.weight", "extra"),
    ({"text": "hi", "messages": [{"role": "user", "content": "hi"}]}, "input.1", "not both"),
    ({"messages": [{"role": "user", "content": "x" * 2048}] * 3}, "input.1.messages", "keep a conversation to 4096"),
])
def test_bad_conversations_are_400s_naming_the_item_and_field(client, chat_job, item, param, fragment):
    assert_error(_predict(client, chat_job.key, chat_job.model, ["good day", item]), 400, fragment, param=param)


def test_conversations_for_models_not_trained_on_chat_are_400s(client, chat_job, trained_job):
    conversation = [{"role": "user", "content": "good day"}]
    assert_error(_predict(client, chat_job.key, chat_job.plain, ["good day", conversation]), 400,
                 "input.1 is a conversation", "not chat rows", "send plain texts", param="input.1.messages")
    response = client.post("/v1/predictions", headers=auth(trained_job.key),
                           json={"model": trained_job.job_id, "input": [{"messages": conversation}]})
    assert_error(response, 400, "is a classifier", param="input.0.messages")
    assert _predict(client, chat_job.key, chat_job.plain, ["good day"]).status_code == 200  # texts still answer


def test_a_chat_validation_file_is_read_as_conversations_to_answer(client, chat_job, tmp_path):
    """`tuneforge predict --messages FILE`: each row's conversation up to its assistant reply, as the wire takes it."""
    from app.client.commands.models import read_conversations
    from app.client.errors import ClientError

    rows = make_mapping_rows(6, seed=4)
    path = tmp_path / "valid.jsonl"
    path.write_bytes(jsonl([{"messages": [SYSTEM, {"role": "user", "content": r["input"]},
                                          {"role": "assistant", "content": r["target"], "weight": 1}]} for r in rows]))
    conversations = read_conversations(path)
    assert conversations[0] == {"messages": [SYSTEM, {"role": "user", "content": rows[0]["input"]}]}
    answer = _predict(client, chat_job.key, chat_job.model, conversations)
    assert answer.status_code == 200, answer.text
    assert sum(p["text"] == r["target"] for p, r in zip(answer.json()["data"], rows, strict=True)) >= 5
    path.write_bytes(jsonl([{"messages": [{"role": "assistant", "content": "x"}]}]))
    with pytest.raises(ClientError, match="line 1: has no message before its assistant reply"):
        read_conversations(path)

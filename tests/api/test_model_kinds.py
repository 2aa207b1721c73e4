"""Base-model kinds through `tuneforge models add` / `remove` (typer's runner, in process, on the test database)
and the job API: kind inference, refusals (remote code, no tokenizer, in use), a method given a model of the
wrong kind, a chat file for a non-decoder, and a text_to_text job whose predictions are generated text."""
from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from tests.api.helpers import assert_error, auth, classification_rows, jsonl, upload
from tests.tiny_text_models import make_mapping_rows, make_tiny_gpt2, make_tiny_llama, make_tiny_t5

CHAT_ROWS = [{"messages": [{"role": "user", "content": r["input"]}, {"role": "assistant", "content": r["target"]}]}
             for r in make_mapping_rows(12)]


def tuneforge(*args: str):
    from app.cli import app

    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def text_models(database, tmp_path_factory) -> dict[str, str]:
    """tiny T5 / GPT-2 / Llama registered with `models add` as kind-t5, kind-gpt2, kind-llama."""
    root = tmp_path_factory.mktemp("kinds")
    for name, make in (("kind-t5", make_tiny_t5), ("kind-gpt2", make_tiny_gpt2), ("kind-llama", make_tiny_llama)):
        result = tuneforge("models", "add", name, str(make(root / name)))
        assert result.exit_code == 0, result.output
    return {"t5": "kind-t5", "gpt2": "kind-gpt2", "llama": "kind-llama"}


def test_kinds_are_inferred_stored_and_listed(client, tenant, text_models, registered_tiny_model):
    _, key = tenant
    kinds = {m["id"]: m.get("kind") for m in client.get("/v1/models", headers=auth(key)).json()["data"]}
    assert (kinds["kind-t5"], kinds["kind-gpt2"], kinds["kind-llama"], kinds[registered_tiny_model]) == (
        "seq2seq", "decoder", "decoder", "encoder")


def test_models_add_refuses_remote_code_and_a_missing_tokenizer(database, tmp_path):
    path = make_tiny_gpt2(tmp_path / "remote")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "modeling_x.XModel"}}))
    result = tuneforge("models", "add", "kind-remote", str(path))
    assert result.exit_code == 1 and "trust_remote_code" in result.output and result.output.count("\n") == 1
    bare = make_tiny_t5(tmp_path / "bare")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (bare / name).unlink()
    result = tuneforge("models", "add", "kind-bare", str(bare))
    assert result.exit_code == 1 and "no tokenizer" in result.output and "save_pretrained" in result.output


def test_a_method_refuses_a_model_of_the_wrong_kind(client, tenant, text_models, registered_tiny_model):
    _, key = tenant
    text = upload(client, key, jsonl(classification_rows(8))).json()["id"]
    error = assert_error(client.post("/v1/fine_tuning/jobs", headers=auth(key), json={
        "model": text_models["t5"], "training_file": text, "method": {"type": "lora"}}), 400, "seq2seq", "encoder",
        param="model")
    assert error["code"] == "invalid_model_kind"
    assert_error(client.post("/v1/fine_tuning/jobs", headers=auth(key), json={
        "model": registered_tiny_model, "training_file": text, "method": {"type": "text_to_text"}}), 400,
        "seq2seq or decoder", param="model")
    chat = upload(client, key, jsonl(CHAT_ROWS)).json()["id"]
    assert_error(client.post("/v1/fine_tuning/jobs", headers=auth(key), json={
        "model": text_models["t5"], "training_file": chat, "method": {"type": "text_to_text"}}), 400,
        "decoder", param="training_file")
    pairs = upload(client, key, jsonl(make_mapping_rows(8))).json()["id"]
    assert_error(client.post("/v1/fine_tuning/jobs", headers=auth(key), json={
        "model": registered_tiny_model, "training_file": pairs}), 400, "text_to_text")  # supervised: no such rows


@pytest.mark.parametrize("rows, fragment", [
    ([{"messages": [{"role": "user", "content": "hi"}]}], "line 1: has no assistant message"),
    ([CHAT_ROWS[0], {"messages": [{"role": "robot", "content": "hi"}]}], "line 2: messages[0].role"),
    ([{"messages": [{"role": "user", "content": ["hi"]}, {"role": "assistant", "content": "x"}]}], "must be a string"),
])
def test_bad_chat_files_are_refused_naming_the_line(client, tenant, text_models, rows, fragment):
    _, key = tenant
    file_id = upload(client, key, jsonl(rows)).json()["id"]
    assert_error(client.post("/v1/fine_tuning/jobs", headers=auth(key), json={
        "model": text_models["gpt2"], "training_file": file_id, "method": {"type": "text_to_text"}}), 400, fragment,
        param="training_file")


def test_text_job_predicts_generated_text_and_blocks_removal(client, tenant, text_models):
    from workers.tasks.run_job import execute

    _, key = tenant
    train = upload(client, key, jsonl(classification_rows(24))).json()["id"]
    job = client.post("/v1/fine_tuning/jobs", headers=auth(key), json={
        "model": text_models["gpt2"], "training_file": train, "seed": 1, "method": {"type": "text_to_text",
        "text_to_text": {"hyperparameters": {"n_epochs": 12, "batch_size": 8, "learning_rate": 1e-2}}}})
    assert job.status_code == 200, job.text
    status = execute(job.json()["id"])
    assert status == "succeeded", client.get(f"/v1/fine_tuning/jobs/{job.json()['id']}", headers=auth(key)).json()["error"]
    model = client.get(f"/v1/fine_tuning/jobs/{job.json()['id']}", headers=auth(key)).json()["fine_tuned_model"]
    inputs = ["good great happy fine item 3", "bad awful sad poor item 4"]
    answer = client.post("/v1/predictions", headers=auth(key), json={"model": model, "input": inputs,
                                                                     "max_new_tokens": 4})
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert [row.get("label") for row in data] == ["pos", "neg"] and all(row["matched"] for row in data)
    assert [row["text"] for row in data] == ["pos", "neg"]
    assert_error(client.post("/v1/predictions", headers=auth(key), json={"model": model, "input": inputs,
                                                                         "max_new_tokens": 10_000}), 400,
                 param="max_new_tokens")
    result = tuneforge("models", "remove", text_models["gpt2"])
    assert result.exit_code == 1 and "1 job(s) (1 succeeded" in result.output and job.json()["id"] in result.output


def test_models_remove_unregisters_an_unused_model(client, tenant, tmp_path):
    path = make_tiny_t5(tmp_path / "spare")
    assert tuneforge("models", "add", "kind-spare", str(path)).exit_code == 0
    result = tuneforge("models", "remove", "kind-spare")
    assert result.exit_code == 0, result.output
    _, key = tenant
    assert "kind-spare" not in {m["id"] for m in client.get("/v1/models", headers=auth(key)).json()["data"]}
    assert path.is_dir()  # the files stay where they were
    shutil.rmtree(path)


def test_every_method_declares_the_kinds_it_accepts():
    from app.base_models.kinds import KINDS, model_kind
    from app.training.registry import list_strategies

    accepted = {spec.name: spec.base_model_kinds for spec in list_strategies()}
    assert all(kinds and set(kinds) <= set(KINDS) for kinds in accepted.values())
    assert {name for name, kinds in accepted.items() if kinds != ("encoder",)} == {"text_to_text"}
    assert [model_kind(c) for c in ({"model_type": "bart", "is_encoder_decoder": True},
                                    {"model_type": "mistral", "architectures": ["MistralForCausalLM"]},
                                    {"model_type": "bert", "architectures": ["BertForMaskedLM"]},
                                    {"model_type": "newthing", "architectures": ["NewThingForCausalLM"]})] == [
        "seq2seq", "decoder", "encoder", "decoder"]

"""Method settings the chosen base model cannot take are a 400 at submission, naming the field and what
to change, not a job that fails once a worker loads the model. The base is the tiny BERT of conftest:
2 encoder layers, hidden size 32, 128 positions, 18,208 parameters outside the embeddings in 36 tensors."""
from __future__ import annotations

import pytest

from app.training.registry import get_strategy, task_method_names
from tests.api.helpers import assert_error, auth
from tests.api.test_jobs import _jobs, create, train_file  # noqa: F401  (train_file is a fixture)

TOO_DEEP = ("tiny-bert has 2 encoder layers", "≤ 1")


@pytest.mark.parametrize("method, settings, field, fragments", [
    ("partial", {"top_layers": 3}, "top_layers", ("tiny-bert has 2 encoder layers", "choose top_layers ≤ 2")),
    ("partial", {"top_layers": 2, "drop_top_layers": 1}, "top_layers", ("1 after drop_top_layers=1", "≤ 1")),
    ("said", {"d": 1_000_000}, "d", ("18,208 parameters of tiny-bert", "choose d ≤ 18208")),
    ("said", {"d": 20}, "d", ("36 projected tensors", "choose d > 36 or said: false")),
    ("said", {"d": 10_000, "drop_top_layers": 1}, "d", ("parameters of tiny-bert", "choose d ≤ 9664")),
    ("lora", {"target_modules": ["query", "q_proj"]}, "target_modules", ("['q_proj']", "'value'")),
    ("lora", {"modules_to_save": ["lm_head"]}, "modules_to_save", ("['lm_head'] name no module", "'pooler'")),
    ("ia3", {"target_modules": ["k_proj"]}, "target_modules", ("['k_proj'] are not linear layers", "'key'")),
    ("ia3", {"target_modules": ["self.dense"]}, "target_modules", ("['self.dense']", "path suffix")),
    ("adapter", {"reduction_factor": 64}, "reduction_factor", ("hidden size 32", "choose reduction_factor ≤ 32")),
    ("prompt_tuning", {}, "num_virtual_tokens", ("20 + max_length 128", "max_length to at most 108")),
    ("prefix_tuning", {"num_virtual_tokens": 40, "hyperparameters": {"max_length": 100}}, "num_virtual_tokens",
     ("exceeds the 128 positions", "num_virtual_tokens to at most 28")),
])
def test_settings_beyond_the_base_are_refused(client, tenant, train_file, registered_tiny_model,
                                              method, settings, field, fragments):
    tenant_id, key = tenant
    response = create(client, key, model=registered_tiny_model, training_file=train_file,
                      method={"type": method, method: settings})
    error = assert_error(response, 400, *fragments, param=f"method.{method}.{field}")
    assert error["code"] == "invalid_method_settings"
    assert _jobs(tenant_id) == 0


@pytest.mark.parametrize("method", [m for m in task_method_names()  # tlm's encoder is random: it has no such field
                                    if "drop_top_layers" in get_strategy(m).settings_model.model_fields])
def test_every_task_method_refuses_layers_the_base_lacks(client, tenant, train_file, registered_tiny_model, method):
    _, key = tenant
    for settings, field, fragments in (({"drop_top_layers": 2}, "drop_top_layers", ("leave none", "≤ 1")),
                                       ({"reinit_top_layers": 2}, "reinit_top_layers", (*TOO_DEEP, "pretrained"))):
        response = create(client, key, model=registered_tiny_model, training_file=train_file,
                          method={"type": method, method: settings})
        assert_error(response, 400, *fragments, param=f"method.{method}.{field}")


def test_a_nested_task_method_is_checked_against_the_base(client, tenant, train_file, registered_tiny_model):
    _, key = tenant
    response = create(client, key, model=registered_tiny_model, training_file=train_file, method={
        "type": "adaptive", "adaptive": {"tapt": True, "then": {"type": "partial", "partial": {"top_layers": 5}}}})
    assert_error(response, 400, "choose top_layers ≤ 2", param="method.adaptive.then.partial.top_layers")


def test_several_problems_are_counted(client, tenant, train_file, registered_tiny_model):
    _, key = tenant
    response = create(client, key, model=registered_tiny_model, training_file=train_file,
                      method={"type": "lora", "lora": {"modules_to_save": ["x"], "target_modules": ["y"]}})
    assert_error(response, 400, "1 more problem", param="method.lora.modules_to_save")


@pytest.mark.parametrize("method, settings", [
    ("partial", {"top_layers": 1, "drop_top_layers": 1}),
    ("said", {"d": 18_208, "include_embeddings": False}),
    ("lora", {"target_modules": ["query", "dense"], "modules_to_save": ["pooler"]}),
    ("ia3", {"target_modules": ["key", "value"]}),
    ("ia3", {"target_modules": ["key", "intermediate.dense", "output.dense"], "feedforward_modules": ["output.dense"]}),
    ("lora", {"target_modules": ["attention.self.query", "attention.output.dense"]}),
    ("adapter", {"reduction_factor": 32}),
    ("prompt_tuning", {"hyperparameters": {"max_length": 108}}),
    ("supervised", {"drop_top_layers": 1}),
])
def test_settings_at_the_base_limits_are_accepted(client, tenant, train_file, registered_tiny_model, method, settings):
    _, key = tenant
    response = create(client, key, model=registered_tiny_model, training_file=train_file,
                      method={"type": method, method: settings})
    assert response.status_code == 200, response.text
    client.post(f"/v1/fine_tuning/jobs/{response.json()['id']}/cancel", headers=auth(key))


@pytest.fixture(scope="module")
def registered_tiny_deberta(database, tmp_path_factory) -> str:
    """A tiny random DeBERTa-v2: its model_type has no LoRA default and its attention names
    query_proj/key_proj/value_proj, so LoRA's fallback `query`/`value` matches nothing."""
    from transformers import DebertaV2Config, DebertaV2Model

    from app.base_models.service import register
    from app.core.db import session_scope

    path = tmp_path_factory.mktemp("tiny-deberta")
    DebertaV2Model(DebertaV2Config(vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                   intermediate_size=64, max_position_embeddings=128)).save_pretrained(path)
    with session_scope() as db:
        register(db, "tiny-deberta", path)
    return "tiny-deberta"


def test_lora_defaults_the_base_lacks_are_refused_and_say_what_to_set(client, tenant, train_file,
                                                                       registered_tiny_deberta):
    tenant_id, key = tenant
    response = create(client, key, model=registered_tiny_deberta, training_file=train_file,
                      method={"type": "lora", "lora": {"r": 4}})
    error = assert_error(response, 400, "not given", "['query', 'value']", "'deberta-v2', which has no default",
                         "set target_modules", "'query_proj'", "'value_proj'", '"all-linear"',
                         param="method.lora.target_modules")
    assert error["code"] == "invalid_method_settings"
    assert _jobs(tenant_id) == 0
    nested = create(client, key, model=registered_tiny_deberta, training_file=train_file, method={
        "type": "adaptive", "adaptive": {"tapt": True, "then": {"type": "lora", "lora": {}}}})
    assert_error(nested, 400, "set target_modules", param="method.adaptive.then.lora.target_modules")
    for settings in ({"target_modules": ["query_proj", "value_proj"]}, {"target_modules": "all-linear"}):
        accepted = create(client, key, model=registered_tiny_deberta, training_file=train_file,
                          method={"type": "lora", "lora": settings})
        assert accepted.status_code == 200, accepted.text
        client.post(f"/v1/fine_tuning/jobs/{accepted.json()['id']}/cancel", headers=auth(key))

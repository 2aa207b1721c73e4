"""Submitting `cloze` jobs (PET, Schick & Schütze 2021): every bad pattern or verbalizer is a 400 naming the
field, checked against the base model and the training file before anything is stored."""
from __future__ import annotations

import pytest

from app.training.registry import get_strategy
from tests.api.helpers import assert_error, classification_rows, jsonl, upload
from tests.api.test_jobs import _jobs, create, train_file  # noqa: F401  (train_file is a fixture)

GOOD = {"patterns": ["{text} It was [MASK].", "[MASK] : {text}"], "verbalizer": {"pos": "good", "neg": "bad"}}


def test_a_cloze_job_is_queued_with_its_patterns_and_verbalizer(client, tenant, train_file, registered_tiny_model):
    response = create(client, tenant[1], model=registered_tiny_model, training_file=train_file,
                      method={"type": "cloze", "cloze": {**GOOD, "peft": {"type": "lora", "r": 4}}})
    assert response.status_code == 200, response.text
    settings = response.json()["method"]["cloze"]
    assert settings["patterns"] == GOOD["patterns"] and settings["verbalizer"] == GOOD["verbalizer"]
    assert settings["peft"]["type"] == "lora" and settings["peft"]["r"] == 4
    assert isinstance(settings["hyperparameters"]["n_epochs"], int)
    assert settings["hyperparameters"]["learning_rate"] == get_strategy("lora").auto.learning_rate  # LoRA's own rate


@pytest.mark.parametrize("cloze, field, fragment", [
    ({"patterns": ["{text} It was good."]}, "patterns", "exactly one [MASK]"),
    ({"patterns": ["{text} [MASK] [MASK]"]}, "patterns", "exactly one [MASK]"),
    ({"patterns": ["{foo} It was [MASK]."]}, "patterns", "unknown slot {foo}"),
    ({"patterns": ["It was [MASK]."]}, "patterns", "no {text} slot"),
    ({"patterns": ["{text} [MASK] {text_pair}", "{text} [MASK]"]}, "patterns", "some patterns use {text_pair}"),
    ({"patterns": []}, "patterns", "at least 1"),
    ({"verbalizer": {"pos": "good", "neg": "good"}}, "verbalizer", "both map to 'good'"),
    ({"verbalizer": {"pos": "good", "neg": " "}}, "verbalizer", "empty word"),
    ({"verbalizer": {}}, "verbalizer", "empty"),
    ({"verbalizer": {"pos": "good", "neg": 3}}, "verbalizer.neg", "string"),
    ({"peft": {"type": "prefix"}}, "peft", "lora"),
    ({"peft": {"type": "lora", "r": 0}}, "peft.lora.r", "greater than or equal to 1"),
    ({"aux_mlm_weight": 0.5}, "aux_mlm_weight", "masked-LM head itself"),
    ({"train_pooler": True}, "train_pooler", "never reads the pooler"),
    ({"stability": {"lp_ft": True}}, "stability", "no new classification head to fit first"),
    ({"stability": {"regularizer": {"type": "r4f"}}}, "stability", "use r3f"),
    ({"stability": {"n_seeds": 2, "parallel_seeds": 3}}, "stability.parallel_seeds", "at most n_seeds (2)"),
])
def test_bad_patterns_and_verbalizers_are_refused(client, tenant, train_file, registered_tiny_model, cloze, field,
                                                  fragment):
    tenant_id, key = tenant
    response = create(client, key, model=registered_tiny_model, training_file=train_file,
                      method={"type": "cloze", "cloze": {**GOOD, **cloze}})
    assert_error(response, 400, fragment, param=f"method.cloze.{field}")
    assert _jobs(tenant_id) == 0


@pytest.mark.parametrize("cloze, rows, field, fragment", [
    ({"verbalizer": {"pos": "good"}}, classification_rows(), "verbalizer", "no word for the label(s) ['neg']"),
    ({}, classification_rows(labels=("pos", "neg", "neu")), "verbalizer", "['neu']"),
    ({"patterns": ["{text} [MASK] {text_pair}"]}, classification_rows(), "patterns", 'no "text_pair"'),
    ({}, [{**row, "text_pair": "a chair"} for row in classification_rows()], "patterns", "add {text_pair}"),
])
def test_settings_the_training_file_cannot_take_are_refused(client, tenant, registered_tiny_model, cloze, rows,
                                                            field, fragment):
    tenant_id, key = tenant
    file_id = upload(client, key, jsonl(rows)).json()["id"]
    response = create(client, key, model=registered_tiny_model, training_file=file_id,
                      method={"type": "cloze", "cloze": {**GOOD, **cloze}})
    error = assert_error(response, 400, fragment, param=f"method.cloze.{field}")
    assert error["code"] == "invalid_method_settings"
    assert _jobs(tenant_id) == 0


def test_without_a_verbalizer_the_labels_are_the_words(client, tenant, train_file, registered_tiny_model):
    response = create(client, tenant[1], model=registered_tiny_model, training_file=train_file,
                      method={"type": "cloze", "cloze": {}})
    assert response.status_code == 200, response.text
    assert response.json()["method"]["cloze"]["patterns"] == ["{text} It was [MASK]."]


def test_lora_targets_are_checked_against_the_base(client, tenant, train_file, registered_tiny_model):
    lora = {"type": "lora", "target_modules": ["q_proj"]}
    response = create(client, tenant[1], model=registered_tiny_model, training_file=train_file,
                      method={"type": "cloze", "cloze": {**GOOD, "peft": lora}})
    assert_error(response, 400, "['q_proj'] are not linear layers", param="method.cloze.peft.target_modules")


def test_a_cloze_after_adaptive_is_checked_against_the_file(client, tenant, train_file, registered_tiny_model):
    then = {"type": "cloze", "cloze": {"verbalizer": {"pos": "good"}}}
    response = create(client, tenant[1], model=registered_tiny_model, training_file=train_file,
                      method={"type": "adaptive", "adaptive": {"tapt": True, "then": then}})
    assert_error(response, 400, "['neg']", param="method.adaptive.then.cloze.verbalizer")

"""Creating `adaptive` jobs: a corpus file of the tenant's own, masking options, a task method to
follow; every bad spec a 4xx naming the field, with nothing stored."""
from __future__ import annotations

import pytest

from tests.api.helpers import assert_error, classification_rows, jsonl, upload
from tests.api.test_jobs import _jobs, create
from tests.conftest import new_tenant

CORPUS = [{"text": f"the match ended {i} to nil after extra time"} for i in range(20)]


@pytest.fixture
def files(client, tenant) -> dict[str, str]:
    key = tenant[1]
    return {"train": upload(client, key, jsonl(classification_rows())).json()["id"],
            "corpus": upload(client, key, jsonl(CORPUS)).json()["id"]}


def test_dapt_tapt_then_lora_job_is_queued(client, tenant, files, registered_tiny_model):
    method = {"type": "adaptive", "adaptive": {
        "corpus_file": files["corpus"], "tapt": True, "mlm": {"mask_rate": 0.4, "unit": "span", "replacement": "mask_only"},
        "then": {"type": "lora", "lora": {"r": 4}}}}
    response = create(client, tenant[1], model=registered_tiny_model, training_file=files["train"], method=method)
    assert response.status_code == 200, response.text
    settings = response.json()["method"]["adaptive"]
    assert settings["corpus_file"] == files["corpus"] and settings["mlm"]["unit"] == "span"
    then = settings["then"]  # validated and resolved at submission, like the job's own method
    assert then["type"] == "lora" and then["lora"]["r"] == 4 and then["lora"]["lora_alpha"] == 16
    assert isinstance(then["lora"]["hyperparameters"]["n_epochs"], int)
    assert then["lora"]["hyperparameters"]["learning_rate"] > 0


@pytest.mark.parametrize("adaptive, status, fragment, param", [
    ({}, 400, "corpus_file", "method.adaptive"),
    ({"tapt": True, "then": {"type": "nope"}}, 400, "unknown method.type", "method.adaptive.then"),
    ({"tapt": True, "then": {"type": "adaptive", "adaptive": {"tapt": True}}}, 400, "task method",
     "method.adaptive.then"),
    ({"tapt": True, "then": {"type": "lora", "lora": {"r": 0}}}, 400, "lora.r", "method.adaptive.then"),
    ({"tapt": True, "mlm": {"mask_rate": 0}}, 400, "mask_rate", "method.adaptive.mlm.mask_rate"),
    ({"tapt": True, "mlm": {"unit": "sentence"}}, 400, "unit", "method.adaptive.mlm.unit"),
    ({"tapt": True, "mlm": {"replacement": "custom", "mask_fraction": 0.5}}, 400, "sum", "method.adaptive.mlm"),
    ({"corpus_file": "file-doesnotexist"}, 404, "no such file", "method.adaptive.corpus_file"),
    ({"tapt": True, "head_warmup": -1}, 400, "head_warmup", "method.adaptive.head_warmup"),
    ({"tapt": True, "head_warmup": "always"}, 400, "head_warmup", "method.adaptive.head_warmup"),
    ({"tapt": True, "encoder_lr_ratio": 0}, 400, "encoder_lr_ratio", "method.adaptive.encoder_lr_ratio"),
    ({"tapt": True, "adapter": {}, "head_warmup": 10}, 400, "head_warmup", "method.adaptive"),
    ({"tapt": True, "peft": "ia3"}, 400, "peft", "method.adaptive.peft"),
    ({"tapt": True, "peft": "lora", "lora": {"r": 0}}, 400, "r", "method.adaptive.lora.r"),
    ({"tapt": True, "peft": "lora", "lora": {"target_modules": ["nope"]}}, 400, "not linear layers",
     "method.adaptive.lora.target_modules"),
    ({"tapt": True, "lora": {"r": 4}}, 400, 'set peft to "lora"', "method.adaptive"),
    ({"tapt": True, "peft": "lora", "adapter": {}}, 400, "drop one", "method.adaptive"),
])
def test_bad_adaptive_specs(client, tenant, files, registered_tiny_model, adaptive, status, fragment, param):
    error = assert_error(create(client, tenant[1], model=registered_tiny_model, training_file=files["train"],
                                method={"type": "adaptive", "adaptive": adaptive}), status, fragment)
    assert error["param"] == param
    assert _jobs(tenant[0]) == 0


def test_corpus_must_be_the_tenants_own_and_hold_texts(client, tenant, files, registered_tiny_model):
    _, other_key = new_tenant()
    theirs = upload(client, other_key, jsonl(CORPUS)).json()["id"]
    untexted = upload(client, tenant[1], jsonl([{"body": "no text"}, {"body": "none here"}])).json()["id"]
    for corpus, status, fragment in ((theirs, 404, "no such file"), (untexted, 400, '"text"')):
        error = assert_error(create(client, tenant[1], model=registered_tiny_model, training_file=files["train"],
                                    method={"type": "adaptive", "adaptive": {"corpus_file": corpus}}), status, fragment)
        assert error["param"] == "method.adaptive.corpus_file"
    assert _jobs(tenant[0]) == 0

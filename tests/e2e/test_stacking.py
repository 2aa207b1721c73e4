"""MAD-X through the real service (Pfeiffer et al. 2020): `adaptive` trains a language adapter on an
uploaded corpus, an `adapter` job stacks its task adapter over it, and the downloaded artifact
rebuilds the model in a fresh process with the job's own predictions."""
from __future__ import annotations

import json

from tests.api.helpers import classification_rows
from tests.e2e.test_service import download_artifacts, reload_in_fresh_process, run_job, upload

SCHEDULE = {"hyperparameters": {"n_epochs": 2, "batch_size": 8, "max_length": 16, "learning_rate": 1e-2}}


def test_language_adapter_then_stacked_task_adapter_downloads_and_reloads(service, openai_client, tiny_model_dir,
                                                                           tmp_path):
    corpus = upload(openai_client, [{"text": f"the match ended {i} to nil after extra time"} for i in range(24)])
    language = run_job(openai_client, "tiny-bert", {"type": "adaptive", "adaptive": {
        "corpus_file": corpus, "adapter": {"reduction_factor": 4}, **SCHEDULE}}, valid_rows=False)
    assert language.status == "succeeded", language.error
    lang_dir = tmp_path / "language"
    lang_files = {a["name"]: a for a in download_artifacts(service, openai_client, language.id, lang_dir)}
    assert set(lang_files) == {"bottleneck/adapter_config.json", "bottleneck/adapter_model.safetensors",
                               "curves.png", "manifest.json"}
    assert f"adapted:{language.id}" not in {m.id for m in openai_client.models.list().data}  # the base is unchanged

    valid_rows = classification_rows(8)
    task = run_job(openai_client, "tiny-bert", {"type": "adapter", "adapter": {"stack": [language.id], **SCHEDULE}},
                   valid_rows=valid_rows)
    assert task.status == "succeeded", task.error
    task_dir = tmp_path / "task"
    names = {a["name"] for a in download_artifacts(service, openai_client, task.id, task_dir)}
    assert {"bottleneck/stack/0/adapter_model.safetensors", "bottleneck/stack/0/adapter_config.json"} <= names
    stack = json.loads((task_dir / "bottleneck" / "adapter_config.json").read_text())["stack"]
    assert [(s["job_id"], s["sha256"]) for s in stack] == [
        (language.id, lang_files["bottleneck/adapter_model.safetensors"]["sha256"])]

    result = reload_in_fresh_process(task_dir, tiny_model_dir, valid_rows)
    assert result["n"] == len(valid_rows) and result["max_abs_diff"] < 1e-4

"""The client's local parts, without a service: job bodies from a spec and flags, where the client
connects from, what an event moves on the follow bar, and which tar entries a download refuses."""
from __future__ import annotations

import io
import os
import tarfile

import pytest

from app.client.commands.follow import bar_fields
from app.client.config import resolve
from app.client.download import ChunkReader, unpack
from app.client.errors import ClientError
from app.client.spec import build_body, load_spec, parse_pairs
from app.core import instance

SPEC = {"model": "minilm-l6", "training_file": "file-a",
        "method": {"type": "lora", "lora": {"r": 8, "hyperparameters": {"n_epochs": 3}}}}


def test_flags_override_the_spec_and_merge_into_its_method():
    body = build_body(SPEC, training_file="file-b", seed=None, settings={"r": 4, "mlm.mask_rate": 0.3},
                      hyperparameters={"batch_size": 8}, metadata={"team": "nlp"})
    assert body["training_file"] == "file-b" and "seed" not in body
    assert body["method"] == {"type": "lora", "lora": {"r": 4, "mlm": {"mask_rate": 0.3},
                                                       "hyperparameters": {"n_epochs": 3, "batch_size": 8}}}
    assert body["metadata"] == {"team": "nlp"}
    assert SPEC["method"]["lora"]["r"] == 8  # the spec itself is left alone
    assert build_body(SPEC, method="bitfit")["method"] == {"type": "bitfit", "bitfit": {}}


def test_hyperparameters_without_a_method_are_openais_top_level_ones():
    body = build_body({}, model="m", training_file="f", hyperparameters={"n_epochs": 2})
    assert body == {"model": "m", "training_file": "f", "hyperparameters": {"n_epochs": 2}}
    with pytest.raises(ClientError, match="--training-file"):
        build_body({}, model="m")


def test_pairs_read_json_values_unless_raw():
    assert parse_pairs(["n_epochs=3", "lr_scheduler=cosine", "target_modules=[\"query\"]", "x=a=b"], "--hp") == {
        "n_epochs": 3, "lr_scheduler": "cosine", "target_modules": ["query"], "x": "a=b"}
    assert parse_pairs(["build=7"], "--metadata", raw=True) == {"build": "7"}
    with pytest.raises(ClientError, match="KEY=VALUE"):
        parse_pairs(["n_epochs"], "--hp")


def test_spec_files_json_or_yaml_and_their_errors_in_one_line(tmp_path):
    (tmp_path / "a.json").write_text('{"model": "m"}')
    (tmp_path / "b.yaml").write_text("model: m\nmethod:\n  type: lora\n")
    (tmp_path / "c.spec").write_text("model: m\n")  # neither suffix: JSON first, then YAML
    assert load_spec(tmp_path / "a.json") == {"model": "m"}
    assert load_spec(tmp_path / "b.yaml") == {"model": "m", "method": {"type": "lora"}}
    assert load_spec(tmp_path / "c.spec") == {"model": "m"}
    (tmp_path / "bad.json").write_text('{"model": ')
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ClientError, match="not valid JSON"):
        load_spec(tmp_path / "bad.json")
    with pytest.raises(ClientError, match="one object"):
        load_spec(tmp_path / "list.yaml")
    with pytest.raises(ClientError, match="cannot read spec"):
        load_spec(tmp_path / "missing.json")


def test_connection_falls_back_to_the_running_up_and_its_saved_key(tmp_path):
    with pytest.raises(ClientError, match="no service URL"):
        resolve(None, None, tmp_path)
    instance.write_state(tmp_path, instance.UpState(os.getpid(), "http://127.0.0.1:8123/", None, None))
    with pytest.raises(ClientError, match="no API key"):
        resolve(None, None, tmp_path)
    instance.save_key(tmp_path, "tf-saved")
    assert resolve(None, None, tmp_path) == resolve("http://127.0.0.1:8123", "tf-saved", tmp_path)
    assert resolve("http://elsewhere:9", "tf-given", tmp_path).url == "http://elsewhere:9"


def test_follow_bar_moves_on_totals_and_training_metrics_only():
    assert bar_fields({"total_steps": 90, "trainable_parameters": 10}) == {"total": 90}
    assert bar_fields({"step": 30, "train_loss": 0.51234, "eval_accuracy": 0.875, "eval_loss": 0.4}) == {
        "completed": 30, "loss": "0.5123", "eval": "accuracy 0.8750"}
    assert bar_fields({"step": 90, "flops": 1.0e9}) == {}  # the closing summary moves nothing


def tar_of(*names: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 2
            archive.addfile(info, io.BytesIO(b"ok"))
    return buffer.getvalue()


def test_a_download_is_hashed_as_it_is_written(tmp_path):
    received: list[int] = []
    written = unpack(ChunkReader(iter([tar_of("ftjob-a/config.json")]), received.append), "ftjob-a", tmp_path)
    assert written == {"config.json": (2, "2689367b205c16ce32ed4200942b8b8b1e262dfc70d9bc9fbc77c49699a4f1df")}
    assert (tmp_path / "config.json").read_bytes() == b"ok" and sum(received) == len(tar_of("ftjob-a/config.json"))


@pytest.mark.parametrize("name", ["ftjob-a/../escape", "ftjob-b/other-job", "/etc/ftjob-a", "ftjob-a"])
def test_a_download_refuses_entries_outside_its_job_folder(tmp_path, name):
    with pytest.raises(ClientError, match="unexpected entry"):
        unpack(ChunkReader(iter([tar_of(name)]), lambda _: None), "ftjob-a", tmp_path)
    assert not (tmp_path.parent / "escape").exists()

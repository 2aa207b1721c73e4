"""The client commands as a user types them (the installed `tuneforge` script in subprocesses) against
real `tuneforge api` + `tuneforge worker` processes: upload, create, list/get, follow a real training
job to its end, pause/resume/cancel, Ctrl-C, download with checksums, predict (once the endpoint
exists), and server errors as one line."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest

from app.core.config import get_settings
from app.fsio import sha256_file
from tests.api.helpers import classification_rows, jsonl
from tests.client.conftest import TUNEFORGE, User
from tests.e2e.conftest import wait_for
from tests.harness import Background
from tests.tiny_models import make_classification_rows

QUICK_JOB = ["--model", "tiny-bert", "--method", "bitfit", "--hp", "n_epochs=1", "--hp", "batch_size=8"]


def upload(user: User, folder: Path, rows: list[dict], name: str = "train.jsonl") -> str:
    path = folder / name
    path.write_bytes(jsonl(rows))
    return user.ok("files", "upload", str(path)).strip()


def job(user: User, job_id: str) -> dict:
    return json.loads(user.ok("jobs", "get", job_id))


def test_upload_names_bad_lines_locally_and_sends_nothing_then_uploads(user, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine", "label": "a"}\n{"text": "no label"}\n\n{not json}\n')
    line = user.fails("files", "upload", str(bad))
    assert "line 2" in line and '"label"' in line and "line 4: not valid JSON" in line and "nothing uploaded" in line
    assert json.loads(user.ok("files", "list", "--json")) == []

    file_id = upload(user, tmp_path, classification_rows(24))
    assert file_id.startswith("file-")
    uploaded = json.loads(user.ok("files", "get", file_id))
    assert uploaded["bytes"] == len(jsonl(classification_rows(24))) and uploaded["filename"] == "train.jsonl"
    assert file_id in user.ok("files", "list")


def test_create_from_flags_and_from_a_yaml_spec_then_list_get_cancel(user, tmp_path):
    train = upload(user, tmp_path, classification_rows(24))
    from_flags = user.ok("jobs", "create", "--model", "tiny-bert", "--training-file", train, "--method", "lora",
                         "--set", "r=4", "--hp", "n_epochs=1", "--suffix", "flags",
                         "--metadata", "origin=flags").strip()
    spec = tmp_path / "job.yaml"
    spec.write_text(f"model: tiny-bert\ntraining_file: {train}\nseed: 7\n"
                    "method:\n  type: bitfit\n  bitfit:\n    hyperparameters:\n      n_epochs: 1\n")
    from_spec = user.ok("jobs", "create", "--spec", str(spec), "--hp", "batch_size=8").strip()
    for job_id in (from_flags, from_spec):  # before the worker spends time on them
        assert user.ok("jobs", "cancel", job_id).strip() == f"job {job_id} cancelled"

    flags, specified = job(user, from_flags), job(user, from_spec)
    assert flags["method"]["type"] == "lora" and flags["method"]["lora"]["r"] == 4
    assert flags["method"]["lora"]["hyperparameters"]["n_epochs"] == 1
    assert flags["suffix"] == "flags" and flags["metadata"] == {"origin": "flags"}
    assert specified["seed"] == 7 and specified["method"]["type"] == "bitfit"
    assert specified["method"]["bitfit"]["hyperparameters"]["n_epochs"] == 1
    assert specified["method"]["bitfit"]["hyperparameters"]["batch_size"] == 8
    table = user.ok("jobs", "list")
    assert from_flags in table and from_spec in table and "lora" in table and "cancelled" in table
    filtered = json.loads(user.ok("jobs", "list", "--metadata", "origin=flags", "--json"))
    assert [j["id"] for j in filtered] == [from_flags]

    line = user.fails("jobs", "cancel", from_flags)
    assert line.startswith("tuneforge: error: 409 ") and "already cancelled" in line


def test_follow_a_job_to_success_then_download_it_verified_and_catch_a_corrupted_file(user, tmp_path):
    train = upload(user, tmp_path, classification_rows(32))
    valid = upload(user, tmp_path, classification_rows(8), "valid.jsonl")
    job_id = user.ok("jobs", "create", *QUICK_JOB, "--training-file", train, "--validation-file", valid).strip()
    followed = user.run("jobs", "follow", job_id)
    assert followed.returncode == 0, followed.stderr
    assert "Step " in followed.stdout and "Training " in followed.stdout
    model = job(user, job_id)["fine_tuned_model"]
    assert followed.stdout.strip().splitlines()[-1] == f"job {job_id} succeeded: fine-tuned model {model}"
    assert model in user.ok("models", "list")

    listed = {a["name"]: a for a in json.loads(user.ok("artifacts", "list", job_id, "--json"))}
    folder = Path(user.ok("artifacts", "download", job_id, "--out", str(tmp_path / "dl")).strip())
    assert folder == tmp_path / "dl" / job_id
    assert {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} == set(listed)
    assert {"manifest.json", "config.json"} <= set(listed)
    assert all(sha256_file(folder / name) == a["sha256"] for name, a in listed.items())

    stored = get_settings().artifacts_dir / user.tenant_id / job_id / "config.json"
    stored.write_bytes(stored.read_bytes().replace(b"{", b"[", 1))  # same size, other bytes
    line = user.fails("artifacts", "download", job_id, "--out", str(tmp_path / "again"))
    assert "failed verification" in line and "config.json: sha256" in line
    assert list((tmp_path / "again").iterdir()) == []  # nothing kept, not even the staging folder


def test_ctrl_c_detaches_without_cancelling_then_pause_resume_cancel(user, tmp_path):
    train = upload(user, tmp_path, make_classification_rows(1200, seed=11))
    # 50 epochs of batches of 1 (60,000 steps; it is paused and cancelled long before), so the job is still
    # running when Ctrl-C, the status check and the pause land, however fast the machine
    job_id = user.ok("jobs", "create", "--model", "tiny-bert", "--training-file", train, "--method", "lora",
                     "--set", "r=4", "--hp", "n_epochs=50", "--hp", "batch_size=1", "--hp", "checkpoint_every=30",
                     "--hp", "max_length=16").strip()
    follow = Background([TUNEFORGE, "jobs", "follow", job_id], user.env)
    follow.wait_for("Step ")  # training has begun
    follow.proc.send_signal(signal.SIGINT)
    assert follow.proc.wait(timeout=30) == 130
    assert "not cancelled" in follow.wait_for("detached from job")
    assert job(user, job_id)["status"] == "running"

    assert user.ok("jobs", "pause", job_id).split()[-1] in ("pausing", "paused")
    wait_for(lambda: job(user, job_id)["status"], lambda status: status == "paused", timeout=90)
    assert user.ok("jobs", "resume", job_id).strip() == f"job {job_id} queued"
    assert user.ok("jobs", "cancel", job_id).strip() == f"job {job_id} cancelled"
    ended = user.run("jobs", "follow", job_id)
    assert ended.returncode == 2 and ended.stderr.strip() == f"job {job_id} cancelled"
    assert "Pause requested" in ended.stdout and "Job cancelled by user" in ended.stdout  # the whole history
    line = user.fails("jobs", "resume", job_id)
    assert line.startswith("tuneforge: error: 409 conflict on fine_tuning_job_id: ") and job_id in line


def test_server_errors_are_one_line(user):
    line = user.fails("jobs", "get", "ftjob-doesnotexist")
    assert line.startswith("tuneforge: error: 404 not_found") and "ftjob-doesnotexist" in line
    line = user.fails("jobs", "create", "--model", "tiny-bert", "--training-file", "file-missing")
    assert line.startswith("tuneforge: error: 404 ") and "file-missing" in line
    user.env["TUNEFORGE_API_KEY"] = "tf-not-a-key"
    assert user.fails("models", "list").startswith("tuneforge: error: 401 invalid_api_key")


def test_predict_with_a_fine_tuned_model(user, service, tmp_path):
    if "/v1/predictions" not in httpx.get(f"{service.url}/openapi.json").json()["paths"]:
        pytest.skip("POST /v1/predictions is not in this checkout yet")
    train = upload(user, tmp_path, classification_rows(32))
    job_id = user.ok("jobs", "create", *QUICK_JOB, "--training-file", train, "--follow").strip().splitlines()[0]
    model = job(user, job_id)["fine_tuned_model"]
    rows = tmp_path / "inputs.jsonl"
    rows.write_bytes(jsonl(classification_rows(3)))  # labels are ignored: a validation file will do
    answer = json.loads(user.ok("predict", model, "good great happy", "--file", str(rows), "--json"))
    assert answer["model"] == model and [p["index"] for p in answer["data"]] == [0, 1, 2, 3]
    for prediction in answer["data"]:
        assert prediction["label"] in ("pos", "neg") and abs(sum(prediction["probabilities"].values()) - 1) < 1e-4
    table = user.ok("predict", job_id, "bad awful sad")  # the job id names the model too
    assert "bad awful sad" in table and ("pos" in table or "neg" in table)
    line = user.fails("predict", "ft:no-such-model", "text")
    assert line.startswith("tuneforge: error: 404 ") and "ft:no-such-model" in line

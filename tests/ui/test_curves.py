"""curves.png: drawn from a tiny job's recorded metrics, served tenant-scoped (200/404/409), and shipped in
the succeeded job's artifact folder, listed in its manifest and its artifacts.tar."""
from __future__ import annotations

import hashlib
import io
import json
import struct
import tarfile
from types import SimpleNamespace

from app.jobs.curves import FILENAME, HEIGHT, WIDTH, render_curves
from app.jobs.results import metrics_events, metrics_rows
from tests.api.helpers import assert_error, auth
from tests.conftest import new_tenant
from tests.ui.conftest import create_queued_job

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the signature."""
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_curves_are_drawn_from_the_recorded_metrics_of_a_tiny_job(trained_job, session):
    rows = metrics_rows(metrics_events(session, trained_job.job_id))
    assert any("train_loss" in r for r in rows) and any("valid_accuracy" in r for r in rows)
    assert png_size(render_curves(rows, trained_job.job_id)) == (WIDTH, HEIGHT)


def test_any_recorded_shape_draws_the_same_size():
    no_eval = [{"step": 1, "train_loss": 0.7}]
    two_phases = [{"step": 1, "train_loss": 3.0}, {"step": 2, "train_loss": float("nan")},
                  {"step": 1, "train_loss": 0.6, "valid_loss": 0.5, "valid_accuracy": 0.9}]
    for rows in (no_eval, two_phases):
        assert png_size(render_curves(rows, "ftjob-x")) == (WIDTH, HEIGHT)


def test_route_answers_the_owner_only(client, trained_job):
    url = f"/v1/fine_tuning/jobs/{trained_job.job_id}/curves.png"
    response = client.get(url, headers=auth(trained_job.key))
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert png_size(response.content) == (WIDTH, HEIGHT)
    _, other_key = new_tenant()
    assert_error(client.get(url, headers=auth(other_key)), 404, "No such fine-tuning job")


def test_a_job_without_metrics_yet_is_a_409(client, tenant, registered_tiny_model, quiet_queue):
    _, key = tenant
    job = create_queued_job(client, key, registered_tiny_model)
    error = assert_error(client.get(f"/v1/fine_tuning/jobs/{job['id']}/curves.png", headers=auth(key)), 409,
                         "no metrics yet")
    assert error["code"] == "metrics_not_ready"


def test_the_succeeded_job_ships_curves_in_its_manifest_and_folder(client, trained_job):
    base = f"/v1/fine_tuning/jobs/{trained_job.job_id}"
    listed = {a["name"]: a for a in client.get(f"{base}/artifacts", headers=auth(trained_job.key)).json()["data"]}
    picture = client.get(f"{base}/artifacts/{FILENAME}", headers=auth(trained_job.key)).content
    assert png_size(picture) == (WIDTH, HEIGHT)
    assert listed[FILENAME]["sha256"] == hashlib.sha256(picture).hexdigest()
    manifest = json.loads(client.get(f"{base}/artifacts/manifest.json", headers=auth(trained_job.key)).content)
    assert manifest["files"][FILENAME] == {"bytes": len(picture), "sha256": listed[FILENAME]["sha256"]}
    assert set(manifest["files"]) == set(listed) - {"manifest.json"}  # every other file, and only those
    with tarfile.open(fileobj=io.BytesIO(client.get(f"{base}/artifacts.tar", headers=auth(trained_job.key)).content)) as tar:
        assert tar.extractfile(f"{trained_job.job_id}/{FILENAME}").read() == picture


def test_a_picture_that_fails_to_draw_leaves_the_artifact_as_it_was(tmp_path, monkeypatch):
    from app.training.artifacts import write_manifest
    from workers.tasks import run_job

    (tmp_path / "weights.bin").write_bytes(b"w")
    write_manifest(tmp_path, job_id="ftjob-x")
    before = (tmp_path / "manifest.json").read_text()
    job = SimpleNamespace(id="ftjob-none")  # no events recorded: the summary alone is one row
    run_job.add_curves(job, tmp_path, {"step": 3, "train_loss": 0.5})
    assert json.loads((tmp_path / "manifest.json").read_text())["files"][FILENAME]["bytes"] > 0

    (tmp_path / "manifest.json").write_text(before)
    (tmp_path / FILENAME).unlink()
    monkeypatch.setattr("app.jobs.curves.render_curves", lambda *a: 1 / 0)
    run_job.add_curves(job, tmp_path, {"step": 3, "train_loss": 0.5})
    assert not (tmp_path / FILENAME).exists() and (tmp_path / "manifest.json").read_text() == before

"""Artifact rows at publish take their hashes from the strategy's manifest instead of re-reading."""
from __future__ import annotations

import json

from app.fsio import sha256_file
from app.training.artifacts import MANIFEST, file_records, write_manifest


def test_file_records_come_from_the_manifest(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "weights.safetensors").write_bytes(b"abc")
    (tmp_path / "eval.jsonl").write_bytes(b"{}\n")
    manifest = json.loads(write_manifest(tmp_path, job_id="ftjob-x").read_text())
    manifest["files"]["adapter/weights.safetensors"]["sha256"] = "listed"  # same size: trusted, not re-read
    manifest["files"]["eval.jsonl"]["bytes"] = 99  # another size: hashed for the row
    (tmp_path / MANIFEST).write_text(json.dumps(manifest))
    assert file_records(tmp_path) == [
        ("adapter/weights.safetensors", 3, "listed"),
        ("eval.jsonl", 3, sha256_file(tmp_path / "eval.jsonl")),
        (MANIFEST, (tmp_path / MANIFEST).stat().st_size, sha256_file(tmp_path / MANIFEST)),
    ]


def test_file_records_without_a_manifest_hash_everything(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"m")
    assert file_records(tmp_path) == [("model.bin", 1, sha256_file(tmp_path / "model.bin"))]

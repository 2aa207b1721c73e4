"""Artifact files: content hashes, the manifest, and loading an artifact back for inference."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from app.training.base import TrainingError

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def directory_sha256(path: Path) -> str:
    """Content hash of a model directory: sorted relative paths and their file hashes."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and ".git" not in p.parts):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0" + sha256_file(file).encode() + b"\n")
    return digest.hexdigest()


def write_manifest(output_dir: Path, **fields: Any) -> Path:
    """Write manifest.json listing every other file in `output_dir` with its size and sha256."""
    files = {p.relative_to(output_dir).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
             for p in sorted(output_dir.rglob("*")) if p.is_file() and p.name != MANIFEST}
    manifest = {"format_version": FORMAT_VERSION, **fields, "files": files}
    path = output_dir / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, default=str))
    return path


def read_manifest(artifact_dir: Path) -> dict[str, Any]:
    return json.loads((artifact_dir / MANIFEST).read_text())


def check_base(manifest: dict[str, Any], base_model_dir: Path) -> None:
    """Refuse to apply an artifact to any base other than the one it was trained on."""
    expected = manifest["base_model"]["sha256"]
    actual = directory_sha256(base_model_dir)
    if actual != expected:
        raise TrainingError(
            f"This artifact was trained on base model {manifest['base_model']['id']!r} (sha256 {expected[:12]}…) "
            f"but {base_model_dir} has sha256 {actual[:12]}…; use the matching base model.",
            code="base_model_mismatch",
        )


def load_classifier(artifact_dir: Path, base_model_dir: Path):
    """(model, tokenizer, labels) for any classification artifact; checks the base model's hash."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    manifest = read_manifest(artifact_dir)
    labels = manifest["labels"]
    if (artifact_dir / "model").is_dir():
        model = AutoModelForSequenceClassification.from_pretrained(artifact_dir / "model")
        return model.eval(), AutoTokenizer.from_pretrained(artifact_dir / "model"), labels
    check_base(manifest, base_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(base_model_dir, **label_kwargs(labels))
    if (artifact_dir / "adapter").is_dir():
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, artifact_dir / "adapter")
    elif (artifact_dir / "delta").is_dir():
        from safetensors.torch import load_file

        delta = load_file(artifact_dir / "delta" / "delta.safetensors")
        missing = set(delta) - set(model.state_dict())
        if missing:
            raise TrainingError(f"delta names tensors the base model lacks: {sorted(missing)[:5]}",
                                code="base_model_mismatch")
        model.load_state_dict(delta, strict=False)
    else:
        raise TrainingError(f"{artifact_dir} holds no model/, adapter/ or delta/ directory", code="invalid_artifact")
    return model.eval(), AutoTokenizer.from_pretrained(base_model_dir), labels


def label_kwargs(labels: list) -> dict[str, Any]:
    return {
        "num_labels": len(labels),
        "id2label": {i: str(label) for i, label in enumerate(labels)},
        "label2id": {str(label): i for i, label in enumerate(labels)},
    }

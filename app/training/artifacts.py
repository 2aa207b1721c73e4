"""Artifact files: content hashes, the manifest, and loading an artifact back for inference.

Layout of a classification job's output directory:
  manifest.json              format_version, job_id, method, task, base_model {id, sha256}, labels
                             (id2label order), files {name: {bytes, sha256}}, metrics, trained_tokens,
                             flops, steps, hyperparameters, settings
  model/                     a whole model (supervised): save_pretrained + tokenizer (plain transformers)
  adapter/                   peft methods (lora, ia3, …): adapter_config.json + adapter_model.safetensors
  delta/delta.safetensors    delta methods (bitfit, …): only the changed tensors, by state_dict name
  (each method's StrategySpec names its files and how they apply over the base)
  eval/predictions.jsonl     with a validation file: {"index", "label", "predicted", "logits"} per row

Importing this module does not import torch (reading or checking a manifest needs none).
"""
from __future__ import annotations

import dataclasses
import inspect
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.fsio import directory_sha256, sha256_file
from app.training.adapted_base import load_pretrained
from app.training.base import TrainContext, TrainingError, TrainResult
from app.training.registry import get_strategy

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def _files(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative posix name, path) of every file below `root`, in name order."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield path.relative_to(root).as_posix(), path


def write_manifest(output_dir: Path, **fields: Any) -> Path:
    # written last, after every file it lists
    """Write manifest.json listing every other file in `output_dir` with its size and sha256."""
    files = {name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
             for name, p in _files(output_dir) if p.name != MANIFEST}
    manifest = {"format_version": FORMAT_VERSION, **fields, "files": files}
    path = output_dir / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, default=str))
    return path


def write_stage_manifest(ctx: TrainContext, result: TrainResult, task: str, then: str | None, **record: Any) -> None:
    """The manifest of a job whose first stage trains an encoder (adaptive, multitask) and whose `then` task
    method may follow: with `then`, that method's manifest gains the stage's `record` and the job's totals
    (method = the job's, task_method = then's, which applies its files); without, the encoder gets its own."""
    totals = {"trained_tokens": result.trained_tokens, "flops": result.flops, "steps": result.steps}
    path = ctx.output_dir / MANIFEST
    if then is not None:
        manifest = json.loads(path.read_text())
        path.unlink()
        fields = {k: v for k, v in manifest.items() if k not in ("format_version", "files")}
        write_manifest(ctx.output_dir, **{**fields, "method": ctx.method, "task_method": then, **totals, **record})
        return
    write_manifest(ctx.output_dir, job_id=ctx.job_id, method=ctx.method, task=task,
                   base_model={"id": ctx.base_model.id, "sha256": ctx.base_model.sha256}, metrics=result.metrics,
                   **totals, hyperparameters=dataclasses.asdict(ctx.hyperparameters), settings=ctx.settings_record(),
                   **record, created_at=datetime.now(UTC).isoformat())


def add_to_manifest(output_dir: Path, name: str) -> None:
    """List one more file (written after the strategy's manifest, e.g. the worker's curves.png) with its
    size and sha256, so `verify_files` and the published rows keep covering every file; the other
    entries are kept as they are, never hashed again. No manifest, nothing to update."""
    path = output_dir / MANIFEST
    if not path.is_file():
        return
    manifest = json.loads(path.read_text())
    file = output_dir / name
    manifest["files"] = dict(sorted({**manifest["files"],
                                     name: {"bytes": file.stat().st_size, "sha256": sha256_file(file)}}.items()))
    path.write_text(json.dumps(manifest, indent=2, default=str))


def read_manifest(artifact_dir: Path) -> dict[str, Any]:
    return json.loads((artifact_dir / MANIFEST).read_text())


def file_records(artifact_dir: Path) -> list[tuple[str, int, str]]:
    """(name, bytes, sha256) of every file in a finished artifact dir, for its Artifact rows.

    The hashes come from manifest.json, which the strategy wrote from these very files moments
    before, so publishing does not read every byte a second time. Only what the manifest does not
    list (manifest.json itself) or lists with another size (then the row tells the truth and
    `verify_files` will refuse the artifact) is hashed here.
    """
    listed = read_manifest(artifact_dir)["files"] if (artifact_dir / MANIFEST).is_file() else {}
    records = []
    for name, path in _files(artifact_dir):
        size, entry = path.stat().st_size, listed.get(name)
        records.append((name, size, entry["sha256"] if entry and entry["bytes"] == size else sha256_file(path)))
    return records


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


def verify_files(artifact_dir: Path, manifest: dict[str, Any]) -> None:
    """Refuse an artifact whose files differ from what its manifest lists (truncated download)."""
    for name, entry in manifest["files"].items():
        path = artifact_dir / name
        if not path.is_file() or path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            raise TrainingError(f"{name} in {artifact_dir} does not match manifest.json (missing, truncated or "
                                "changed); download the artifact again.", code="artifact_corrupted")


def load_classifier(artifact_dir: Path, base_model_dir: Path | None = None, swap: dict[str, Path] | None = None):
    """(model in eval mode, tokenizer, labels) for a task method's artifact: a whole `model/`, or one
    its method's spec applies over the base (`StrategySpec.apply`), with the head of the manifest's
    `task` type (app.training.tasks: a token-classification model for NER, one output for regression).

    `swap` ({stacked job id: adapter dir}) replaces adapters a stacked bottleneck artifact loads under
    its task adapter with other ones trained on the same base, e.g. another language's adapter for
    zero-shot cross-lingual transfer (MAD-X, Pfeiffer et al. 2020); the artifact's files stay as they are.

    Refuses (code "base_model_mismatch") when `base_model_dir`'s content hash differs from the
    manifest's. A full `model/` artifact needs no base, so `base_model_dir` is optional there but
    still checked when given. The tokenizer truncates at the training max_length, so `predict`
    reproduces the job's own predictions.
    """
    from transformers import AutoTokenizer


    artifact_dir, manifest = Path(artifact_dir), read_manifest(Path(artifact_dir))
    from app.training.tasks import get_task  # torch: the API side reads manifests without it

    task = get_task(manifest.get("task"))
    verify_files(artifact_dir, manifest)
    labels = manifest["labels"]
    if base_model_dir is not None:
        check_base(manifest, Path(base_model_dir))
    spec = get_strategy(manifest.get("task_method") or manifest["method"])
    apply = spec.load_apply()
    if swap and (apply is None or "swap" not in inspect.signature(apply).parameters):
        raise TrainingError("swap replaces stacked adapters, and this artifact stacks none; only bottleneck "
                            "adapters (method adapter with stack) can swap.", code="invalid_swap", param="swap")
    if apply is None:  # a whole model
        model = task.model_class().from_pretrained(artifact_dir / "model")
        if (manifest.get("settings") or {}).get("pooling") == "mean":  # the head read the mean in training
            from app.training.pooling import use_mean_pooling
            use_mean_pooling(model)
        tokenizer = AutoTokenizer.from_pretrained(artifact_dir / "model")
    elif base_model_dir is None:
        raise TrainingError("This artifact applies over a base model; pass the base model's directory.",
                            code="base_model_required")
    else:
        model = load_pretrained(task.model_class(), base_model_dir, **task.model_kwargs(labels))
        # structural settings (drop_top_layers) rebuild the trained shape before the artifact applies
        from app.training.structure import restore_structure
        options = {"swap": swap} if swap else {}
        if "base_model_dir" in inspect.signature(apply).parameters:  # an apply that builds its own model
            options["base_model_dir"] = Path(base_model_dir)
        model = apply(restore_structure(model, manifest.get("settings") or {}), artifact_dir, **options)
        tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    max_length = manifest.get("hyperparameters", {}).get("max_length")
    if max_length:
        tokenizer.model_max_length = max_length
    if "multi_label_threshold" in manifest:  # what `predict` applies unless told otherwise
        model.config.multi_label_threshold = manifest["multi_label_threshold"]
    if (wrap := spec.load_tokenizer()) is not None:
        tokenizer = wrap(tokenizer, artifact_dir)
    return model.eval(), tokenizer, labels


def predict(model, tokenizer, examples: list, labels: list | None = None, batch_size: int = 32,
            threshold: float | None = None) -> list[dict[str, Any]]:
    """[{"index", "predicted", ...}] for Examples, {"text", "text_pair"} / {"tokens"} dicts or plain strings,
    answered as the model's task type says (app.training.tasks.predict: a label and logits, a number, the
    labels at or above `threshold` — by default the job's own, which load_classifier reads from the
    manifest, else 0.5 — or a tag per word with entity spans).

    Batches are padded dynamically and truncated at `tokenizer.model_max_length`. `predicted` is
    taken from `labels` (the manifest's list) when given, else from the model's id2label.
    """

    names = labels if labels is not None else [model.config.id2label[i] for i in range(model.config.num_labels)]
    from app.training.tasks.predict import predict_rows, task_of

    return predict_rows(model, tokenizer, examples, names, task_of(model, threshold), batch_size)

"""Intermediate-task chains (STILTs, Phang et al. 2018, "Sentence Encoders on STILTs"): a later job starts
from the encoder an earlier task job ended with, its old head dropped.

The chained encoder is materialized once as a plain `save_pretrained` encoder directory (the source's
artifact applied over its own base by its method's registered `apply`, a peft adapter merged and unloaded,
the head left out) and registered as the tenant's private base model `encoder:<job id>` (the mechanism
`adapted:<job>` uses, see app.base_models.chains). A later job's delta/adapter is relative to that
encoder, and its manifest names it as base plus the whole lineage (base → job → job), each step with
its content hash. Materializing is deterministic, so a fresh process holding the source job's artifact
and the root base rebuilds the very same directory (same sha256) and loads the chained artifact over it.

Torch is imported only inside the functions (the API reads lineage without it).
"""
from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from app.base_models.kinds import ENCODER_PREFIX
from app.fsio import directory_sha256, fsync_tree
from app.training.artifacts import MANIFEST, load_classifier, read_manifest
from app.training.base import TrainingError
from app.training.data import CLASSIFICATION, TASK_TYPES



def chained_model_id(job_id: str) -> str:
    """The id a task job's materialized encoder is registered under (a later job's manifest names it)."""
    return f"{ENCODER_PREFIX}{job_id}"


def is_classifier(manifest: dict[str, Any]) -> bool:
    """A task method's artifact (an encoder under a head to drop, whatever the task type), not an
    encoder-only one (adaptive or multitask without then)."""
    return manifest.get("task", CLASSIFICATION) in TASK_TYPES


def source_method(manifest: dict[str, Any]) -> str:
    """The method whose files apply over the base (adaptive/multitask + then: the then method)."""
    return manifest.get("task_method") or manifest["method"]


def merge_problem(artifact_dir: Path) -> str | None:
    """Why the artifact cannot become a plain encoder, read from its files alone (no torch); None if it can.

    Virtual tokens (prompt/prefix tuning) and bottleneck adapters add computation a plain encoder lacks;
    cloze scores labels through the masked-LM head, with no head to drop. The worker checks the merged weights again."""
    manifest = read_manifest(artifact_dir)
    if not is_classifier(manifest):
        return f"its artifact holds no task model (task {manifest.get('task')!r})"
    if (artifact_dir / "cloze").exists():
        return ("cloze trains the masked-LM model through its patterns, which has no task head to drop; train the "
                "intermediate task with supervised, lora, ia3, bitfit, partial, diff_pruning or said")
    config = artifact_dir / "adapter" / "adapter_config.json"
    if config.is_file():
        peft_type = json.loads(config.read_text()).get("peft_type")
        if peft_type not in ("LORA", "IA3"):
            return (f"its {peft_type} adapter adds virtual tokens, which cannot be merged into the encoder's weights; "
                    "train the intermediate task with supervised, lora, ia3, bitfit, partial, diff_pruning or said")
    if (artifact_dir / "bottleneck").exists():
        return ("its bottleneck adapters add layers a plain encoder lacks, so they cannot be merged; train the "
                "intermediate task with supervised, lora, ia3, bitfit, partial, diff_pruning or said")
    return None


def materialize_encoder(artifact_dir: Path, base_model_dir: Path | None, out_dir: Path) -> str:
    """Write the source job's encoder (no head) to `out_dir` as a plain encoder + the base's tokenizer and
    return its sha256. The source's method `apply`s over `base_model_dir` (load_classifier, which checks
    the base's hash); a peft adapter is merged and unloaded. Written beside and renamed into place, so the
    directory is only ever whole; one already there is kept."""
    import torch
    from transformers import AutoTokenizer

    artifact_dir, out_dir = Path(artifact_dir), Path(out_dir)
    if problem := merge_problem(artifact_dir):
        raise TrainingError(f"The source job cannot start a chain: {problem}.", code="invalid_chain", param="model")
    model, _, _ = load_classifier(artifact_dir, base_model_dir)
    if hasattr(model, "merge_and_unload"):  # peft: LoRA/IA3 folded into the weights, wrappers removed
        model = model.merge_and_unload()
    encoder = model.base_model  # transformers' backbone below the task head
    with torch.device("meta"):
        plain = set(type(encoder)(encoder.config).state_dict())
    if extra := sorted(set(encoder.state_dict()) - plain):
        raise TrainingError(f"The source job's weights do not merge into a plain encoder (extra tensors "
                            f"{extra[:3]}); choose a job trained with a mergeable method.", code="invalid_chain",
                            param="model")
    config = encoder.config
    for key in ("id2label", "label2id", "problem_type"):  # the old head's labels are not the encoder's
        config.__dict__.pop(key, None)
    config.num_labels = 2
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir if base_model_dir is not None else artifact_dir / "model")
    staging = out_dir.with_name(f".{out_dir.name}.{uuid.uuid4().hex}.tmp")  # two jobs may start from one source
    encoder.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    fsync_tree(staging)
    try:
        staging.rename(out_dir)
    except OSError:  # another job materialized it first: the same bytes (materializing is deterministic)
        shutil.rmtree(staging, ignore_errors=True)
        if not (out_dir / "config.json").is_file():
            raise
    return directory_sha256(out_dir)


def lineage_step(manifest: dict[str, Any], job_id: str, fine_tuned_model: str | None, model_id: str,
                 sha256: str) -> list[dict[str, Any]]:
    """The lineage of a model materialized from job `job_id` (whose manifest is `manifest`): the source's
    own lineage (or its base), then the source job and the encoder it left."""
    before = manifest.get("lineage") or [{"model": manifest["base_model"]["id"], "sha256": manifest["base_model"]["sha256"]}]
    return [*before, {"job": job_id, "fine_tuned_model": fine_tuned_model, "method": source_method(manifest),
                      "model": model_id, "sha256": sha256}]


def describe_lineage(lineage: list[dict[str, Any]]) -> str:
    """"minilm-l6 → ftjob-a (supervised) → …" for events and model cards."""
    return " → ".join(step["model"] if "job" not in step else f"{step['job']} ({step['method']})" for step in lineage)


def record_lineage(output_dir: Path, lineage: list[dict[str, Any]]) -> None:
    """Add `lineage` to a finished artifact's manifest (manifest.json lists other files, never itself, so
    the listed hashes stay valid)."""
    path = output_dir / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["lineage"] = lineage
    path.write_text(json.dumps(manifest, indent=2, default=str))

"""What a prediction runs: a finished artifact, how it goes over its base, read from its manifest.

Torch-free: the API decides here, at once, whether a job's artifact can be served and how, before any
model loads (and the benchmark builds the same descriptors for artifacts outside the service).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from app.training.artifacts import read_manifest
from app.training.base import BaseModelRef, TrainingError
from app.training.registry import get_strategy

# How a served model runs (app/predictions/engines.py): a LoRA adapter in its base's shared pool, a dense
# delta over the shared base, a whole model of its own (load_classifier), or a text_to_text model that
# generates (app/predictions/text_engines.py: its whole model/, or its adapter over the shared base)
Kind = Literal["lora", "delta", "whole", "text"]
GENERATING = "text_to_text"  # the method whose artifacts generate text
DELTA_APPLY = "app.training.delta:apply_delta"  # StrategySpec.apply of the dense-delta methods
ADAPTER_CONFIG = Path("adapter") / "adapter_config.json"


class NotServable(ValueError):
    """The artifact trained no classifier (an MLM encoder, a language adapter): nothing to predict with."""


@dataclass(frozen=True)
class ServedModel:
    name: str  # echoed in responses: the job's fine_tuned_model
    artifact_dir: Path
    kind: Kind
    labels: tuple[str, ...]  # in logit order, as strings (config.json's id2label)
    max_length: int | None  # the job's: inputs truncate where training truncated them
    base: BaseModelRef | None  # None: a whole model/ needs no base
    drop_top_layers: int = 0  # the trained shape (app.training.structure.restore_structure)
    pooling: str = "cls"  # what the head reads: the pooler over [CLS] or the mean (app.training.pooling)
    modules_to_save: tuple[str, ...] = ()  # LoRA: modules each adapter ships whole (head, pooler)
    task: str = "sequence_classification"  # the manifest's task type (app.training.tasks)
    threshold: float = 0.5  # multi-label: a label applies at this sigmoid probability
    model_kind: str = "encoder"  # text models: seq2seq or decoder (how prompts are built)
    max_new_tokens: int = 32  # text models: greedy generation length (the job's default; a request may set its own)
    system: str | None = None  # chat-trained models: the system message every training conversation opened with

    @property
    def key(self) -> str:
        """Cache key: one artifact directory per job, never rewritten once the job succeeded."""
        return str(self.artifact_dir)


def serving_kind(artifact_dir: Path, manifest: dict[str, Any]) -> tuple[Kind, dict[str, Any]]:
    """(kind, the LoRA adapter's config or {}); NotServable for an artifact without a classifier."""
    method = manifest.get("task_method") or manifest["method"]
    spec = get_strategy(method)
    if method == GENERATING:
        return "text", {}
    if not spec.trains_task:
        raise NotServable(f"This {method} job trained no classifier, only an encoder or a language adapter, so it "
                          "has nothing to predict with; fine-tune a task method on it (name its adapted model as "
                          "`model` in a new job, or stack its adapter) and predict with that job.")
    if spec.apply is None or manifest.get("task", "sequence_classification") != "sequence_classification":
        return "whole", {}  # other task types run alone through load_classifier (no shared-base batching yet)
    if spec.apply == DELTA_APPLY:
        return "delta", {}
    if spec.reload == "peft" and (artifact_dir / ADAPTER_CONFIG).is_file():
        config = json.loads((artifact_dir / ADAPTER_CONFIG).read_text())
        if config.get("peft_type") == "LORA" and not config.get("use_dora"):  # peft mixes no DoRA batches
            return "lora", config
    return "whole", {}


def describe(name: str, artifact_dir: Path, base: BaseModelRef | None,
             manifest: dict[str, Any] | None = None) -> ServedModel:
    """The ServedModel of a finished task artifact over `base`, the base it was trained on (unused by a
    whole model/). NotServable without a classifier; TrainingError when the base is missing or another."""
    manifest = manifest if manifest is not None else read_manifest(artifact_dir)
    kind, adapter_config = serving_kind(artifact_dir, manifest)
    trained_on = manifest["base_model"]
    needs_base = get_strategy(manifest.get("task_method") or manifest["method"]).apply is not None \
        or (kind == "text" and manifest.get("peft") == "lora")
    if needs_base and base is None:
        raise TrainingError(f"Base model {trained_on['id']!r}, which this model applies over, is no longer "
                            "registered; an operator can register it again.", code="base_model_missing")
    if needs_base and base.sha256 != trained_on["sha256"]:
        raise TrainingError(f"This model was trained on base model {trained_on['id']!r} with sha256 "
                            f"{trained_on['sha256'][:12]}…, but that model now has sha256 {base.sha256[:12]}…; an "
                            "operator must register the original files again.", code="base_model_mismatch")
    return ServedModel(
        name=name, artifact_dir=artifact_dir, kind=kind, labels=tuple(str(label) for label in manifest["labels"]),
        max_length=(manifest.get("hyperparameters") or {}).get("max_length"), base=base if needs_base else None,
        drop_top_layers=(manifest.get("settings") or {}).get("drop_top_layers") or 0,
        pooling=(manifest.get("settings") or {}).get("pooling") or "cls",
        modules_to_save=tuple(sorted(set(adapter_config.get("modules_to_save") or ()))),
        task=manifest.get("task", "sequence_classification"), threshold=manifest.get("multi_label_threshold", 0.5),
        model_kind=manifest.get("kind", "encoder"),
        max_new_tokens=(manifest.get("generation") or {}).get("max_new_tokens", 32),
        system=(manifest.get("generation") or {}).get("system"))

"""Merged export: a task artifact applied over its base and folded into plain weights.

The output is `save_pretrained` of a whole classifier plus its tokenizer, so
`AutoModelForSequenceClassification.from_pretrained(dir)` loads it with neither tuneforge nor peft.
Every artifact that `load_classifier` applies over a base folds, as long as the applied model is a
stock transformers model with the base's own tensors: peft LoRA/IA3 merge (`merge_and_unload`), dense
and sparse deltas (BitFit, partial, diff pruning) and SAID write into the base tensors already.
What cannot fold is refused by `export_refusal` before any work is queued, with the reason.

Importing this module does not import torch: the API calls `export_refusal` on a request.
"""
from __future__ import annotations

import json
from pathlib import Path

from app.training.artifacts import load_classifier, read_manifest
from app.training.base import TrainingError
from app.training.registry import get_strategy

# peft methods whose weights are extra inputs (virtual tokens, prefixes), not changes to base tensors
PROMPT_LEARNING = {"PROMPT_TUNING", "MULTITASK_PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING", "ADAPTION_PROMPT", "CPT"}
PEFT_CONFIG = Path("adapter") / "adapter_config.json"
BOTTLENECK_CONFIG = Path("bottleneck") / "adapter_config.json"
CLOZE_CONFIG = Path("cloze") / "cloze.json"


def export_refusal(artifact_dir: Path) -> str | None:
    """Why this finished job's artifact cannot become merged plain weights, or None if it can.

    Reads only manifest.json and adapter configs (no torch), so the API answers at once."""
    artifact_dir = Path(artifact_dir)
    manifest = read_manifest(artifact_dir)
    method = manifest.get("task_method") or manifest["method"]
    spec = get_strategy(method)
    if method == "text_to_text":
        return ("A text_to_text artifact is already a plain generative model (model/, loads with "
                "AutoModelForSeq2SeqLM/AutoModelForCausalLM) or a PEFT LoRA adapter (adapter/, peft's "
                "merge_and_unload merges it over the base); merged exports are built for classifiers only.")
    if (manifest.get("settings") or {}).get("pooling") == "mean":
        return (f"This {method} job's head reads the mean of the last hidden states (pooling 'mean'); transformers' "
                "sequence-classification classes read the [CLS] pooler, so merged plain weights would predict "
                "differently. Load it with tuneforge's load_classifier over the base, or train with pooling 'cls' "
                "for an exportable artifact.")
    if not spec.trains_task:
        return (f"This {method} job trained no classifier, only an encoder (registered as a model: name it as "
                "`model` in a new job); there is nothing to merge.")
    if spec.apply is None:
        return (f"This {method} job's artifact is already full weights: download the files under model/ "
                "(GET .../artifacts); they load with plain transformers.")
    if (artifact_dir / CLOZE_CONFIG).is_file():
        return (f"A {method} artifact classifies with its masked-LM head, reading the word it predicts at the mask of "
                "its patterns; no sequence-classification model expresses that, so there is nothing to merge. Load "
                "it with tuneforge's load_classifier over the base (mlm/ alone also loads with plain "
                "transformers' AutoModelForMaskedLM).")
    if (artifact_dir / PEFT_CONFIG).is_file():
        peft_type = json.loads((artifact_dir / PEFT_CONFIG).read_text()).get("peft_type")
        if peft_type in PROMPT_LEARNING:
            return (f"A {method} artifact ({peft_type}) is learned virtual tokens added to every input, not a change "
                    "to any base weight: virtual tokens cannot fold into weights, so there is nothing to merge. Load "
                    "adapter/ with peft over the base instead, or train lora, ia3 or bitfit for a mergeable artifact.")
    if (artifact_dir / BOTTLENECK_CONFIG).is_file():
        return (f"A {method} artifact inserts bottleneck adapters (down-projection, non-linearity, up-projection) "
                "into every encoder layer; no weight of the base architecture can express that, so plain "
                "transformers cannot load it merged. Load it with tuneforge's load_classifier over the base, or "
                "train lora, ia3 or bitfit for a mergeable artifact.")
    return None


def merged_classifier(artifact_dir: Path, base_model_dir: Path):
    """(plain transformers classifier, tokenizer): the artifact applied over its base and folded.

    Raises TrainingError (code "not_mergeable") if what the method's apply produced is not a stock
    model with exactly the base architecture's tensors."""
    reason = export_refusal(artifact_dir)
    if reason:
        raise TrainingError(reason, code="not_mergeable")
    model, tokenizer, _ = load_classifier(artifact_dir, base_model_dir)
    if hasattr(model, "merge_and_unload"):  # a peft model: fold the adapter into the base weights
        model = model.merge_and_unload()
    check_plain(model)
    return model.eval(), tokenizer


def check_plain(model) -> None:
    """Refuse a model that `from_pretrained` could not rebuild from its config alone: another class,
    extra or missing tensors (inserted modules), forward hooks or parametrizations left on it."""
    import torch

    from app.training.tasks.predict import task_of

    with torch.device("meta"):  # the head class of the model's task type (token classification for NER)
        fresh = task_of(model).model_class().from_config(model.config)
    ours, theirs = set(model.state_dict()), set(fresh.state_dict())
    hooked = [name for name, m in model.named_modules()
              if m._forward_hooks or m._forward_pre_hooks or hasattr(m, "parametrizations")]
    if type(model) is not type(fresh) or ours != theirs or hooked:
        extra, missing = sorted(ours - theirs)[:5], sorted(theirs - ours)[:5]
        raise TrainingError(f"The applied artifact is not a plain {type(fresh).__name__} (extra tensors {extra}, "
                            f"missing {missing}, hooked modules {hooked[:5]}), so it cannot be saved merged.",
                            code="not_mergeable")


def export_merged(artifact_dir: Path, base_model_dir: Path, output_dir: Path) -> None:
    """Write the merged classifier and its tokenizer into `output_dir` (the caller's staging dir)."""
    model, tokenizer = merged_classifier(artifact_dir, base_model_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)

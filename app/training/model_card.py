"""What makes a task artifact a ready folder for its user, beside the method's own files:

- `config.json`: the trained classifier's config (the base's, with `num_labels`, `id2label`,
  `label2id` and any structural change such as dropped layers), so label names come with the model;
- peft's `adapter/adapter_config.json` names the base by its public name (a Hugging Face hub id where
  one is known, e.g. minilm-l6 = sentence-transformers/all-MiniLM-L6-v2), or by a path relative to the
  adapter folder when the base ships in the artifact (an adapted `encoder/`), never by a path on the
  server; PEFT's empty README template is dropped;
- `README.md`: a model card saying base, method, data size, metrics and how to load it.

Torch-free; called by the strategies' save functions and `finish_classification`.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from app.training.adapted_base import is_adapted
from app.training.base import TrainContext

# Public (Hugging Face hub) names of the base models tuneforge registers itself, by tuneforge id.
PUBLIC_NAMES = {"minilm-l6": "sentence-transformers/all-MiniLM-L6-v2"}
ADAPTED_ENCODER = "encoder"  # where an adaptive job's artifact holds the encoder its task method used
NATIVE_PEFT_TYPES = ("LORA", "IA3")  # adapters transformers itself loads (its PEFT integration)


def base_name(ctx: TrainContext) -> str:
    """The base model as a user outside the service names it: hub id when known, else tuneforge's id."""
    return PUBLIC_NAMES.get(ctx.base_model.id, ctx.base_model.id)


def adapted_encoder(ctx: TrainContext) -> Path | None:
    """The encoder an adaptive job adapted, when it lies in the artifact itself."""
    encoder = ctx.output_dir / ADAPTED_ENCODER
    return encoder if ctx.base_model.id.startswith("adapted:") and encoder.is_dir() else None


def base_ships(ctx: TrainContext) -> bool:
    """Whether the base lies in the artifact as a model transformers loads alone (not base id + LoRA,
    app.training.adapted_base, which only tuneforge merges)."""
    encoder = adapted_encoder(ctx)
    return encoder is not None and not is_adapted(encoder)


def base_reference(ctx: TrainContext, from_dir: Path) -> str:
    """What an artifact file in `from_dir` names as its base: a path relative to `from_dir` when the
    base ships in the artifact, else `base_name`."""
    if base_ships(ctx):
        return Path(os.path.relpath(ctx.output_dir / ADAPTED_ENCODER, from_dir)).as_posix()
    return base_name(ctx)


def publish_adapter_config(adapter_dir: Path, ctx: TrainContext) -> None:
    """Point peft's adapter_config.json at the base's public name (not this server's path) and drop
    peft's empty README template (the artifact's README.md is the model card)."""
    path = adapter_dir / "adapter_config.json"
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = base_reference(ctx, adapter_dir)
    if config.get("tokenizer_name_or_path"):  # prompt tuning's text init names the base's tokenizer
        config["tokenizer_name_or_path"] = base_reference(ctx, adapter_dir)
    path.write_text(json.dumps(config, indent=2, sort_keys=True))
    (adapter_dir / "README.md").unlink(missing_ok=True)


def write_config(output_dir: Path, model: Any) -> None:
    """`config.json`: the trained classifier's transformers config, labels included."""
    from app.training.sharding import plain_type

    base = getattr(model, "get_base_model", lambda: model)()
    data = base.config.to_dict()
    data["architectures"] = [plain_type(base).__name__]  # a sharded model's class is FSDP's subclass
    data.pop("_name_or_path", None)  # the server's path of the base
    (output_dir / "config.json").write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def head(output_dir: Path) -> tuple[str, str]:
    """(transformers Auto class, pipeline task) of the trained head, read from the ready folder's
    config.json: token classification (NER) or sequence classification (single-label, multi-label and
    regression, which the text-classification pipeline scores by the config's problem_type)."""
    config = output_dir / "config.json"
    architectures = json.loads(config.read_text()).get("architectures") or [""] if config.is_file() else [""]
    if architectures[0].endswith("ForTokenClassification"):
        return "AutoModelForTokenClassification", "token-classification"
    return "AutoModelForSequenceClassification", "text-classification"


def load_lines(ctx: TrainContext, reload: str, folder: str) -> list[str]:
    """Three lines of Python that load the artifact unpacked in `folder` and classify with it."""
    shipped, cfg = base_ships(ctx), f'AutoConfig.from_pretrained("{folder}")'
    auto, task = head(ctx.output_dir)
    base = f"{folder}/{ADAPTED_ENCODER}" if shipped else base_name(ctx)
    adapter = ctx.output_dir / "adapter" / "adapter_config.json"
    peft_type = json.loads(adapter.read_text()).get("peft_type") if adapter.is_file() else None
    if reload == "transformers":
        return ["from transformers import pipeline", f'classify = pipeline("{task}", model="{folder}/model")']
    if (encoder := adapted_encoder(ctx)) is not None and is_adapted(encoder):  # base id + LoRA: tuneforge merges
        return ["from app.training.artifacts import load_classifier, predict  # needs tuneforge installed",
                f'model, tokenizer, labels = load_classifier("{folder}", "{folder}/{ADAPTED_ENCODER}")  # '
                "its base + LoRA, merged",
                "classify = lambda texts: predict(model, tokenizer, texts, labels)  # [{predicted, logits}]"]
    if reload == "peft" and peft_type in NATIVE_PEFT_TYPES and not shipped:
        return [f"from transformers import AutoConfig, {auto}, pipeline",
                f'model = {auto}.from_pretrained("{folder}/adapter", config={cfg})',
                f'classify = pipeline("{task}", model=model, tokenizer="{base}")']
    if reload == "peft":
        return [f"from peft import PeftModel; from transformers import AutoConfig, {auto}, pipeline",
                f'base = {auto}.from_pretrained("{base}", config={cfg})',
                f'classify = pipeline("{task}", model=PeftModel.from_pretrained(base, "{folder}/adapter"), '
                f'tokenizer="{base}")']
    return ["from app.training.artifacts import load_classifier, predict  # needs tuneforge installed",
            f'model, tokenizer, labels = load_classifier("{folder}", "<directory of {base_name(ctx)}>")',
            "classify = lambda texts: predict(model, tokenizer, texts, labels)  # [{predicted, logits}]"]


def write_model_card(ctx: TrainContext, *, reload: str, paper: str, labels: list, train_examples: int,
                     valid_examples: int, metrics: dict[str, Any], steps: int, parameters: dict[str, int]) -> Path:
    """`README.md`: what was trained on what, how well, and how to load it."""
    folder, name = ctx.job_id, base_name(ctx)
    if getattr(ctx.settings, "pooling", "cls") == "mean":  # transformers' heads read [CLS]: only tuneforge loads it
        reload = "tuneforge"
    hp = asdict(ctx.hyperparameters)
    settings = json.dumps(ctx.settings_record(), sort_keys=True)
    trained = parameters.get("trainable", 0)
    share = f" ({100 * trained / parameters['total']:.2f}% of {parameters['total']:,})" if parameters.get("total") else ""
    shown = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in sorted(metrics.items()))
    peft = "library_name: peft\n" if reload == "peft" else "library_name: transformers\n"
    lines = [
        "---", f"{peft}base_model: {name}", f"pipeline_tag: {head(ctx.output_dir)[1]}", f"tags: [tuneforge, {ctx.method}]",
        "---", f"# {folder}: `{ctx.method}` text classifier on {name}", "",
        f"Fine-tuned by tuneforge job `{folder}`.", "",
        "| | |", "| --- | --- |",
        f"| base model | `{name}` (tuneforge id `{ctx.base_model.id}`, sha256 `{ctx.base_model.sha256[:16]}…`) |",
        f"| method | `{ctx.method}` ({paper}); settings `{settings}` |",
        f"| labels | {len(labels)}: {', '.join(f'`{label}`' for label in labels)} |",
        f"| data | {train_examples} training examples, {valid_examples} validation examples |",
        f"| training | n_epochs {hp.get('n_epochs')}, {steps} optimizer steps, batch size {hp.get('batch_size')}, "
        f"learning rate {hp.get('learning_rate')}, max_length {hp.get('max_length')}, seed {hp.get('seed')} |",
        f"| parameters trained | {trained:,}{share} |",
        f"| metrics | {shown or 'none (no validation file)'} |", "",
        "## Use it", "",
        f"Unpack the download so that `{folder}/` is in the current directory, then:", "",
        "```python", *load_lines(ctx, reload, folder), "```", "",
        f"`classify(texts, truncation=True, max_length={hp.get('max_length')})` answers "
        "`[{\"label\": ..., \"score\": ...}]`, one per text (truncated as in training, so it reproduces the job's "
        "own predictions)." if reload != "tuneforge" else
        "Give load_classifier the very base model it was trained on (its sha256 is checked), or ask the service "
        f"for a merged export (`POST /v1/fine_tuning/jobs/{folder}/export`), which loads with plain transformers "
        "where the method folds into plain weights (bottleneck adapters, virtual tokens and cloze models do not: "
        "the service answers 400 export_not_supported, saying why).",
        "", "`manifest.json` lists every file with its sha256, the labels, metrics, tokens and FLOPs.", "",
    ]
    path = ctx.output_dir / "README.md"
    path.write_text("\n".join(lines))
    return path

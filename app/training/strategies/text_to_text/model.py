"""Loading a generative base (seq2seq or decoder) for training, and a finished artifact for predictions."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from app.base_models.kinds import ModelDirError, model_kind, read_config
from app.training.base import TrainingError

ACCEPTED = ("seq2seq", "decoder")


def base_kind(path: Path, name: str) -> str:
    """The base's kind, read as the API read it; refused when text_to_text cannot train it (re-checked here:
    the directory may have changed since the job was submitted)."""
    try:
        kind = model_kind(read_config(path))
    except ModelDirError as exc:
        raise TrainingError(str(exc), code="invalid_base_model", param="model") from None
    if kind not in ACCEPTED:
        raise TrainingError(f"{name} is an {kind} model; text_to_text trains seq2seq or decoder models only.",
                            code="invalid_model_kind", param="model")
    return kind


def model_class(kind: str) -> Any:
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    return AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM


def position_limit(model: Any, tokenizer: Any) -> int:
    """Tokens the model can read at once (decoders: prompt and answer together)."""
    config = getattr(model, "get_base_model", lambda: model)().config
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    return min(tokenizer.model_max_length, positions or 10**9)


def load_text_model(artifact_dir: Path, base_model_dir: Path | None) -> tuple[Any, Any, str]:
    """(model in eval mode, tokenizer, kind) of a text_to_text artifact: its whole `model/`, or its LoRA
    `adapter/` over the base it names (checked against the manifest's sha256 and files)."""
    from transformers import AutoTokenizer

    from app.training.artifacts import check_base, read_manifest, verify_files
    from app.training.strategies.text_to_text.encoding import ensure_pad

    manifest = read_manifest(artifact_dir)
    verify_files(artifact_dir, manifest)
    kind = manifest["kind"]
    if (artifact_dir / "model").is_dir():
        model = model_class(kind).from_pretrained(artifact_dir / "model")
        tokenizer = AutoTokenizer.from_pretrained(artifact_dir / "model")
    elif base_model_dir is None:
        raise TrainingError("This artifact is a LoRA adapter; pass the base model's directory.",
                            code="base_model_required")
    else:
        from peft import PeftModel

        check_base(manifest, Path(base_model_dir))
        model = PeftModel.from_pretrained(model_class(kind).from_pretrained(base_model_dir), artifact_dir / "adapter")
        tokenizer = AutoTokenizer.from_pretrained(base_model_dir)
    return model.eval(), ensure_pad(tokenizer), kind

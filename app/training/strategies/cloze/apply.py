"""Loading a cloze artifact back (PET, Schick & Schütze 2021): `load_classifier` gets a ClozeModel over
the masked-LM the job trained, and a tokenizer that writes texts into the job's patterns, so `predict`
and the predictions endpoint call both as they call any classifier and reproduce the job's logits.

Layout: `cloze/cloze.json` (patterns, verbalizer, labels, the words' token ids, base id + sha256) and
the weights: `mlm/` (a whole masked-LM, save_pretrained), `adapter/` (peft LoRA over the base's
masked-LM) or `delta/delta.safetensors` (BitFit's biases), each with the MLM-head transform when
the base lacked one.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.training.adapted_base import load_pretrained
from app.training.artifacts import read_manifest
from app.training.strategies.cloze.encoding import ClozeEncoder

CONFIG = Path("cloze") / "cloze.json"
WHOLE = "mlm"  # the default (no cloze.peft): the whole masked-LM


class ClozeTokenizer:
    """Called like a transformers tokenizer (texts, optional pairs, truncation to `model_max_length` or
    `max_length`), it answers the cloze rows of those texts under every pattern; `pad` batches them."""

    def __init__(self, encoder: ClozeEncoder, uses_pairs: bool):
        self.encoder, self.uses_pairs = encoder, uses_pairs

    @property
    def model_max_length(self) -> int:
        return self.encoder.tokenizer.model_max_length

    @model_max_length.setter
    def model_max_length(self, value: int) -> None:
        self.encoder.tokenizer.model_max_length = value

    def __call__(self, text: str | list[str], text_pair: str | list[str] | None = None, *,
                 max_length: int | None = None, padding: bool | str = False, return_tensors: str | None = None,
                 **_: Any):
        from transformers import BatchEncoding

        texts = [text] if isinstance(text, str) else list(text)
        pairs = [text_pair] if isinstance(text_pair, str) else (list(text_pair) if text_pair is not None else None)
        if (pairs is not None) != self.uses_pairs:
            raise ValueError("this model's patterns use {text_pair}: give each text its pair" if self.uses_pairs else
                             "this model's patterns have no {text_pair}: give texts alone")
        rows = self.encoder.encode(texts, pairs, max_length or self.model_max_length)
        if padding or return_tensors:
            return BatchEncoding(self.encoder.pad(rows))
        return {key: [row[key] for row in rows] for key in rows[0]}

    def pad(self, features: list[dict[str, list]], return_tensors: str | None = "pt", **_: Any):
        from transformers import BatchEncoding

        return BatchEncoding(self.encoder.pad(features))


def read_config(artifact_dir: Path) -> dict[str, Any]:
    return json.loads((Path(artifact_dir) / CONFIG).read_text())


def cloze_tokenizer(tokenizer: Any, artifact_dir: Path) -> ClozeTokenizer:
    """StrategySpec.tokenizer: the base's tokenizer wrapped in the artifact's patterns."""
    config = read_config(artifact_dir)
    return ClozeTokenizer(ClozeEncoder(tokenizer, config["patterns"]), config["uses_pairs"])


def apply_cloze(model: Any, artifact_dir: Path, base_model_dir: Path):
    """StrategySpec.apply: the artifact's masked-LM as a ClozeModel (the classifier `model` built from the
    base is not used: a cloze model has no classification head)."""
    from transformers import AutoModelForMaskedLM

    from app.training.strategies.cloze.model import ClozeModel
    from app.training.structure import restore_structure

    artifact_dir = Path(artifact_dir)
    config = read_config(artifact_dir)
    if (artifact_dir / WHOLE).is_dir():
        mlm = AutoModelForMaskedLM.from_pretrained(artifact_dir / WHOLE)
    else:
        mlm = restore_structure(load_pretrained(AutoModelForMaskedLM, base_model_dir),
                                read_manifest(artifact_dir).get("settings") or {})
        if (artifact_dir / "adapter").is_dir():
            from app.training.peft_adapter import apply_adapter

            mlm = apply_adapter(mlm, artifact_dir)
        else:
            from app.training.delta import apply_delta

            mlm = apply_delta(mlm, artifact_dir)
    return ClozeModel(mlm, config["label_tokens"]).eval()

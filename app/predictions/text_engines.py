"""Generating models for predictions (torch): text_to_text artifacts, greedy decoding.

A whole `model/` runs alone; LoRA adapters of one seq2seq/decoder base share one copy of it per process
(`TextPool`, like the encoders' LoraPool): the base loads once, each adapter is added under its own name and
activated for its own requests. Runs on the inference thread only (app/predictions/batcher.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.predictions.served import ServedModel
from app.training.artifacts import check_base
from app.training.base import BaseModelRef
from app.training.data import CHAT
from app.training.strategies.text_to_text.encoding import ensure_pad
from app.training.strategies.text_to_text.generation import generate, match_label
from app.training.strategies.text_to_text.model import load_text_model, model_class


def _prompts(served: ServedModel, inputs: list) -> list:
    """Chat-trained models read a text as the user's turn of a new conversation, and a conversation as it is,
    both after the system message all training conversations shared (if they did and it has none of its own)."""
    if served.task != CHAT:
        return inputs
    system = [{"role": "system", "content": served.system}] if served.system is not None else []
    conversations = [[{"role": "user", "content": x}] if isinstance(x, str) else x for x in inputs]
    return [c if any(m["role"] == "system" for m in c) else [*system, *c] for c in conversations]


def answers(served: ServedModel, texts: list[str]) -> list[dict[str, Any]]:
    """Per generated text (a chat-trained model's: the assistant's reply): {"text"}, plus the label it names
    (None: no label) for classification-trained jobs."""
    labels = list(served.labels)
    if not labels:
        return [{"text": text} for text in texts]
    return [{"text": text, "label": (label := match_label(text, labels)), "matched": label is not None}
            for text in texts]


@dataclass
class TextModel:
    """A whole text_to_text model/ of its own."""

    model: Any
    kind: str

    def generate(self, name: str, tokenizer: Any, served: ServedModel, texts: list, max_new_tokens: int,
                 batch_rows: int) -> list[dict[str, Any]]:
        return answers(served, generate(self.model, tokenizer, self.kind, _prompts(served, texts),
                                        served.max_length or 512, max_new_tokens, batch_rows))


class TextPool:
    """One seq2seq/decoder base and the LoRA adapters loaded over it (peft names them)."""

    def __init__(self, ref: BaseModelRef, kind: str):
        check_base({"base_model": {"id": ref.id, "sha256": ref.sha256}}, ref.path)
        from transformers import AutoTokenizer

        self.kind = kind
        self.tokenizer = ensure_pad(AutoTokenizer.from_pretrained(ref.path))
        self._base = model_class(kind).from_pretrained(ref.path).eval()
        self.peft: Any = None

    def add(self, name: str, adapter_dir: Path) -> None:
        from peft import PeftModel

        if self.peft is None:
            self.peft = PeftModel.from_pretrained(self._base, adapter_dir, adapter_name=name).eval()
        else:
            self.peft.load_adapter(adapter_dir, adapter_name=name)

    def remove(self, name: str) -> bool:
        """Unload one adapter; True when it was the last (the pool is then dropped)."""
        names = list(self.peft.peft_config)
        if names == [name]:
            self.peft = None
            return True
        if self.peft.active_adapter == name:
            self.peft.set_adapter(next(n for n in names if n != name))
        self.peft.delete_adapter(name)
        return False

    def generate(self, name: str, tokenizer: Any, served: ServedModel, texts: list, max_new_tokens: int,
                 batch_rows: int) -> list[dict[str, Any]]:
        if self.peft.active_adapter != name:
            self.peft.set_adapter(name)
        return answers(served, generate(self.peft, tokenizer, self.kind, _prompts(served, texts),
                                        served.max_length or 512, max_new_tokens, batch_rows))


def load_whole(served: ServedModel) -> tuple[TextModel, Any]:
    model, tokenizer, kind = load_text_model(served.artifact_dir, None)
    return TextModel(model, kind), tokenizer

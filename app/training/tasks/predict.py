"""Predictions of a loaded task model, whatever its task type: what `app.training.artifacts.predict`
and the predictions service answer with.

Token classification reads words: an input's `tokens`, or its `text` split on whitespace (each word
keeps its character span). A word's tag is its first sub-token's, as in training; words cut off by
max_length are tagged "O". Entities are seqeval's chunks of the tags (`get_entities`), with their
character spans in the text (for `tokens`, in the tokens joined by single spaces).
"""
from __future__ import annotations

import re
from typing import Any

import torch

from app.training.data import CLASSIFICATION, MULTI_LABEL, REGRESSION, TOKEN_CLASSIFICATION
from app.training.tasks import Task, get_task
from app.training.tasks.sequence import DEFAULT_THRESHOLD
from app.training.tasks.tokens import first_subtokens

_WORD = re.compile(r"\S+")


def task_of(model: torch.nn.Module, threshold: float | None = None) -> Task:
    """The Task a loaded model's head serves (a peft wrapper's class names the head too); a multi-label
    `threshold` of None is the one load_classifier set from the manifest, else 0.5."""
    if threshold is None:
        threshold = getattr(model.config, "multi_label_threshold", None) or DEFAULT_THRESHOLD
    if type(model).__name__.endswith("ForTokenClassification"):
        return get_task(TOKEN_CLASSIFICATION, threshold)
    problem = getattr(model.config, "problem_type", None)
    return get_task({"regression": REGRESSION, "multi_label_classification": MULTI_LABEL}.get(problem, CLASSIFICATION),
                    threshold)


def _field(example: Any, name: str) -> Any:
    if isinstance(example, str):
        return example if name == "text" else None
    return example.get(name) if isinstance(example, dict) else getattr(example, name, None)


def words_of(example: Any) -> tuple[str, list[tuple[str, int, int]]]:
    """(text, [(word, start, end)]) of a token-classification input: its `tokens`, or its text's words."""
    tokens = _field(example, "tokens")
    if tokens is not None:
        text = " ".join(tokens)
        spans, start = [], 0
        for token in tokens:
            spans.append((token, start, start + len(token)))
            start += len(token) + 1
        return text, spans
    text = _field(example, "text")
    return text, [(m.group(), m.start(), m.end()) for m in _WORD.finditer(text)]


def entities(tags: list[str], words: list[tuple[str, int, int]], text: str) -> list[dict[str, Any]]:
    """seqeval's entity chunks of `tags` as {"entity", "start", "end", "text", "words": [first, last + 1]}."""
    from seqeval.metrics.sequence_labeling import get_entities

    out = []
    for kind, first, last in get_entities(tags):
        start, end = words[first][1], words[last][2]
        out.append({"entity": kind, "start": start, "end": end, "text": text[start:end], "words": [first, last + 1]})
    return out


def _token_rows(model, tokenizer, examples: list, labels: list, task: Task, batch_size: int) -> list[dict[str, Any]]:
    device, rows = next(model.parameters()).device, []
    for start in range(0, len(examples), batch_size):
        chunk = [words_of(e) for e in examples[start:start + batch_size]]
        encoded = tokenizer([[w for w, _, _ in spans] or [""] for _, spans in chunk], is_split_into_words=True,
                            truncation=True, padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = model(**encoded.to(device)).logits.float().cpu()
        for offset, (text, spans) in enumerate(chunk):
            kept = first_subtokens(encoded.word_ids(offset))[:len(spans)]
            answer = task.prediction(logits[offset][kept], labels)
            tags = answer["predicted"] + ["O"] * (len(spans) - len(kept))
            rows.append({"index": start + offset, "predicted": tags, "entities": entities(tags, spans, text),
                         "logits": answer["logits"]})
    return rows


def predict_rows(model, tokenizer, examples: list, labels: list, task: Task, batch_size: int = 32) -> list[dict[str, Any]]:
    """[{"index", "predicted", ...}] per example, in order (see the module docstring for token tasks)."""
    model.eval()
    if task.per_token:
        return _token_rows(model, tokenizer, examples, labels, task, batch_size)
    texts = [_field(e, "text") for e in examples]
    pairs = [_field(e, "text_pair") for e in examples]
    device, rows = next(model.parameters()).device, []
    for start in range(0, len(texts), batch_size):
        chunk_pairs = pairs[start:start + batch_size]
        encoded = tokenizer(texts[start:start + batch_size], chunk_pairs if chunk_pairs[0] is not None else None,
                            truncation=True, padding=True, return_tensors="pt").to(device)
        with torch.no_grad():
            logits = model(**encoded).logits.float().cpu()
        rows += [{"index": start + offset, **task.prediction(row, labels)} for offset, row in enumerate(logits)]
    return rows

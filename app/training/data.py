"""Reading and validating JSONL training files. Pure Python: the API uses it before queueing."""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class DatasetError(ValueError):
    """A problem in a data file, with the 1-based line it was found on."""

    def __init__(self, message: str, line: int | None = None, param: str | None = None):
        self.message, self.line, self.param = message, line, param
        super().__init__(f"line {line}: {message}" if line else message)


@dataclass
class Example:
    text: str
    label: str | int
    text_pair: str | None = None


@dataclass
class DatasetSummary:
    n_examples: int
    labels: list[str | int]
    has_pair: bool
    n_chars: int


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for every non-blank line; the first bad line raises."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetError(f"not valid UTF-8 (byte {exc.start}); save the file as UTF-8", number) from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"not valid JSON ({exc.msg} at column {exc.colno})", number) from None
            if not isinstance(obj, dict):
                raise DatasetError(f"expected a JSON object, got {type(obj).__name__}", number)
            yield number, obj


def _example(number: int, obj: dict[str, Any]) -> Example:
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        raise DatasetError('needs a non-empty string "text" field', number)
    if "label" not in obj:
        raise DatasetError('needs a "label" field (a string or an integer)', number)
    label = obj["label"]
    if isinstance(label, bool) or not isinstance(label, str | int) or (isinstance(label, str) and not label):
        raise DatasetError(f'"label" must be a non-empty string or an integer, got {json.dumps(label)[:40]}', number)
    pair = obj.get("text_pair")
    if pair is not None and not isinstance(pair, str):
        raise DatasetError('"text_pair" must be a string', number)
    return Example(text=text, label=label, text_pair=pair)


def load_classification_examples(path: Path) -> list[Example]:
    return [_example(number, obj) for number, obj in iter_jsonl(path)]


def validate_classification_file(path: Path) -> DatasetSummary:
    """Check a {"text", "label"} / {"text", "text_pair", "label"} file; raise on the first problem."""
    labels: set[str | int] = set()
    n, chars, pair_mode = 0, 0, None
    for number, obj in iter_jsonl(path):
        example = _example(number, obj)
        has_pair = example.text_pair is not None
        if pair_mode is None:
            pair_mode = has_pair
        elif has_pair != pair_mode:
            raise DatasetError("mixes rows with and without \"text_pair\"; use one form for the whole file", number)
        labels.add(example.label)
        n += 1
        chars += len(example.text) + len(example.text_pair or "")
    if n == 0:
        raise DatasetError("the file has no examples")
    if len({type(label) for label in labels}) > 1:
        raise DatasetError("labels mix strings and integers; use one type")
    if len(labels) < 2:
        raise DatasetError(f"all {n} examples have the label {next(iter(labels))!r}; a classifier needs at least 2 label classes")
    return DatasetSummary(n_examples=n, labels=sorted(labels), has_pair=bool(pair_mode), n_chars=chars)

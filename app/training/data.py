"""Reading and validating JSONL training files. Pure Python: the API uses it before queueing.

A classification row is `{"text": str, "label": str|int}` or, for text-pair (NLI-style) tasks,
`{"text": str, "text_pair": str, "label": str|int}`. Blank lines are skipped. Errors name the
1-based line and say what to change, because they are shown to the person who uploaded the file.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class DatasetError(ValueError):
    """A problem in a data file, with the 1-based line it was found on (None: the whole file).

    `errors` holds every problem found when validation was asked to collect more than one.
    """

    def __init__(self, message: str, line: int | None = None, param: str | None = None,
                 errors: list[DatasetError] | None = None):
        self.message, self.line, self.param = message, line, param
        self.errors: list[DatasetError] = errors or [self]
        text = f"line {line}: {message}" if line else message
        if len(self.errors) > 1:
            text += "; also " + "; ".join(f"line {e.line}: {e.message}" if e.line else e.message
                                          for e in self.errors[1:])
        super().__init__(text)


@dataclass
class Example:
    text: str
    label: str | int
    text_pair: str | None = None


@dataclass
class DatasetSummary:
    n_examples: int
    labels: list[str | int]  # sorted, with the type the file used
    has_pair: bool
    n_chars: int
    label_counts: dict[str, int] = field(default_factory=dict)  # str(label) -> rows


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield (line number, object) for every non-blank line; the first bad line raises."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DatasetError(f"not valid UTF-8 (byte {exc.start} of the line); save the file as UTF-8",
                                   number) from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"not valid JSON ({exc.msg} at column {exc.colno}); write one JSON object "
                                   "per line", number) from None
            if not isinstance(obj, dict):
                raise DatasetError(f"expected a JSON object like {{\"text\": ..., \"label\": ...}}, "
                                   f"got a JSON {_json_type(obj)}", number)
            yield number, obj


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "number",
            float: "number", type(None): "null"}[type(value)]


def parse_example(number: int, obj: dict[str, Any]) -> Example:
    """One row as an Example, or a DatasetError naming the line and the field to fix."""
    if "text" not in obj:
        raise DatasetError('is missing the "text" field; add "text": "<the input text>"', number)
    text = obj["text"]
    if not isinstance(text, str):
        raise DatasetError(f'"text" must be a string, got a JSON {_json_type(text)}', number)
    if not text.strip():
        raise DatasetError('"text" is empty; give every example some text or remove the line', number)
    if "label" not in obj:
        raise DatasetError('is missing the "label" field; add "label": "<class name>" (a string or an integer)',
                           number)
    label = obj["label"]
    if isinstance(label, bool) or not isinstance(label, str | int) or (isinstance(label, str) and not label.strip()):
        raise DatasetError(f'"label" must be a non-empty string or an integer, got {json.dumps(label)[:40]}',
                           number)
    pair = obj.get("text_pair")
    if pair is not None and not isinstance(pair, str):
        raise DatasetError(f'"text_pair" must be a string (the second text of a pair), got a JSON '
                           f"{_json_type(pair)}", number)
    return Example(text=text, label=label, text_pair=pair)


def load_classification_examples(path: Path) -> list[Example]:
    """Every row of an (already validated) classification file, in file order."""
    return [parse_example(number, obj) for number, obj in iter_jsonl(path)]


def validate_classification_file(path: Path, max_errors: int = 1) -> DatasetSummary:
    """Check a classification file; raise DatasetError after `max_errors` row problems.

    Row problems (bad field, mixed pair / non-pair rows) are collected up to `max_errors`; a
    broken line (bad UTF-8 or JSON) stops reading at once, as do whole-file problems (no rows,
    fewer than 2 label classes, string and integer labels mixed).
    """
    errors: list[DatasetError] = []
    labels: dict[str | int, int] = {}
    n, chars, pair_mode, first_line = 0, 0, None, 0
    try:
        for number, obj in iter_jsonl(path):
            try:
                example = parse_example(number, obj)
                has_pair = example.text_pair is not None
                if pair_mode is None:
                    pair_mode, first_line = has_pair, number
                elif has_pair != pair_mode:
                    this, other = ("has", "does not") if has_pair else ("lacks", "has one")
                    raise DatasetError(f'{this} "text_pair" but line {first_line} {other}; use one form '
                                       "(single texts or text pairs) for the whole file", number)
            except DatasetError as exc:
                errors.append(exc)
                if len(errors) >= max(1, max_errors):
                    break
                continue
            labels[example.label] = labels.get(example.label, 0) + 1
            n += 1
            chars += len(example.text) + len(example.text_pair or "")
    except DatasetError as exc:  # unreadable line: nothing after it can be trusted
        errors.append(exc)
    if errors:
        raise DatasetError(errors[0].message, errors[0].line, errors[0].param, errors=errors)
    if n == 0:
        raise DatasetError("the file has no examples; add one JSON object per line")
    if len({type(label) for label in labels}) > 1:
        raise DatasetError('labels mix strings and integers (e.g. "1" and 1); use one type for every "label"')
    if len(labels) < 2:
        only = next(iter(labels))
        raise DatasetError(f"all {n} examples have the label {json.dumps(only)}; a classifier needs at least "
                           "2 label classes")
    return DatasetSummary(n_examples=n, labels=sorted(labels), has_pair=bool(pair_mode), n_chars=chars,
                          label_counts={str(k): v for k, v in sorted(labels.items())})


def iter_texts(path: Path, field_name: str = "text") -> Iterator[str]:
    """The non-blank texts of an unlabelled corpus, for masked-language-model phases: JSONL `{"text"}`
    (other fields, labels included, are ignored) or plain text one document per line, maybe gzip —
    read by the one corpus reader, app.training.corpus_text. Raises DatasetError naming the first bad line."""
    from app.training.corpus_text import iter_documents  # it imports DatasetError from here

    for _, text in iter_documents(path, field_name):
        yield text


def _enough_texts(n: int) -> None:
    if n < 2:
        raise DatasetError(f"the corpus has {n} non-blank text(s); masked-language-model training needs "
                           "at least 2 (one is held out to score the model)")


def load_texts(path: Path) -> list[str]:
    texts = list(iter_texts(path))
    _enough_texts(len(texts))
    return texts


def validate_texts(path: Path) -> int:
    """Check a corpus without holding it in memory (the API does this at submission)."""
    n = sum(1 for _ in iter_texts(path))
    _enough_texts(n)
    return n

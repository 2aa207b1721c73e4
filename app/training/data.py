"""Reading and validating JSONL training files. Pure Python: the API uses it before queueing.

The task type is inferred from the rows (one type per file; the first row decides, a row of another
type is an error naming its line):
- sequence classification: `{"text": str, "label": str|int}`, or with `"text_pair": str` (NLI-style);
- regression: `{"text": ..., ["text_pair": ...,] "label": <number with a fraction or exponent, e.g. 3.0>}`
  (integer labels may appear beside them: they are numbers too; a file of integers alone is classes);
- multi-label classification: `{"text": ..., "labels": [str|int, ...]}` (an empty list: no label applies);
- token classification (NER): `{"tokens": [str, ...], "tags": [str, ...]}`, one BIO tag per token
  ("O", "B-TYPE", "I-TYPE");
- text-to-text: `{"input": str, "target": str}`, the target text generated from the input (method text_to_text);
- chat: OpenAI's chat fine-tuning rows `{"messages": [{"role": "system"|"user"|"assistant", "content": str,
  ["weight": 0|1]}, ...]}` with at least one assistant turn, for decoder models (method text_to_text).
Blank lines are skipped. Errors name the 1-based line and say what to change, because they are shown
to the person who uploaded the file.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The task types a training file can hold (StrategySpec.task_kinds names those a method trains).
CLASSIFICATION = "sequence_classification"
TOKEN_CLASSIFICATION = "token_classification"
REGRESSION = "regression"
MULTI_LABEL = "multi_label_classification"
TASK_TYPES = (CLASSIFICATION, TOKEN_CLASSIFICATION, REGRESSION, MULTI_LABEL)
# rows a generative model learns to write (app/training/strategies/text_to_text); no classifier method trains them
TEXT_TO_TEXT = "text_to_text"
CHAT = "chat"
GENERATION_TYPES = (TEXT_TO_TEXT, CHAT)
CHAT_ROLES = ("system", "user", "assistant")
_ROW_SHAPES = {
    CLASSIFICATION: 'a classification row ({"text", "label": "<class>"})',
    REGRESSION: 'a regression row ({"text", "label": <number such as 0.5>})',
    MULTI_LABEL: 'a multi-label row ({"text", "labels": [...]})',
    TOKEN_CLASSIFICATION: 'a token-classification row ({"tokens": [...], "tags": [...]})',
    TEXT_TO_TEXT: 'a text-to-text row ({"input", "target"})',
    CHAT: 'a chat row ({"messages": [...]})',
}
_BIO = re.compile(r"^(O|[BI]-\S+)$")


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
    """One row. `label` is the class (classification), a float (regression), the list of labels that
    apply (multi-label) or one tag per token (token classification, whose `text` is the tokens joined
    by spaces, what masked-LM phases read)."""

    text: str
    label: Any
    text_pair: str | None = None
    tokens: list[str] | None = None


@dataclass
class DatasetSummary:
    n_examples: int
    labels: list[str | int]  # sorted, with the type the file used (NER: "O", then B-/I- per entity type)
    has_pair: bool
    n_chars: int
    label_counts: dict[str, int] = field(default_factory=dict)  # str(label) -> rows (NER: tokens)
    task: str = CLASSIFICATION


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


def row_task(obj: dict[str, Any]) -> str:
    """The task type a row's fields say (its values are checked by parse_example)."""
    if "messages" in obj:
        return CHAT
    if "input" in obj or "target" in obj:
        return TEXT_TO_TEXT
    if "tokens" in obj or "tags" in obj:
        return TOKEN_CLASSIFICATION
    if "labels" in obj:
        return MULTI_LABEL
    return REGRESSION if isinstance(obj.get("label"), float) else CLASSIFICATION


def _is_class(value: Any) -> bool:
    return not isinstance(value, bool) and (isinstance(value, int) or (isinstance(value, str) and bool(value.strip())))


def _text(number: int, obj: dict[str, Any]) -> tuple[str, str | None]:
    if "text" not in obj:
        raise DatasetError('is missing the "text" field; add "text": "<the input text>"', number)
    text = obj["text"]
    if not isinstance(text, str):
        raise DatasetError(f'"text" must be a string, got a JSON {_json_type(text)}', number)
    if not text.strip():
        raise DatasetError('"text" is empty; give every example some text or remove the line', number)
    pair = obj.get("text_pair")
    if pair is not None and not isinstance(pair, str):
        raise DatasetError(f'"text_pair" must be a string (the second text of a pair), got a JSON '
                           f"{_json_type(pair)}", number)
    return text, pair


def _token_row(number: int, obj: dict[str, Any]) -> Example:
    tokens, tags = obj.get("tokens"), obj.get("tags")
    if not isinstance(tokens, list) or not tokens:
        raise DatasetError('"tokens" must be a non-empty array of words, e.g. "tokens": ["Ada", "lives", "here"]',
                           number)
    if not isinstance(tags, list):
        raise DatasetError('"tags" must be an array with one BIO tag per token, e.g. "tags": ["B-PER", "O", "O"]',
                           number)
    if len(tokens) != len(tags):
        raise DatasetError(f'has {len(tokens)} tokens but {len(tags)} tags; give exactly one tag per token', number)
    for i, token in enumerate(tokens):
        if not isinstance(token, str) or not token.strip():
            raise DatasetError(f'token {i} must be a non-blank string, got {json.dumps(token)[:40]}', number)
    for i, tag in enumerate(tags):
        if not isinstance(tag, str) or not _BIO.match(tag):
            raise DatasetError(f'tag {i} ({json.dumps(tag)[:40]}) is not a BIO tag; use "O", "B-<TYPE>" or '
                               '"I-<TYPE>" (e.g. "B-PER")', number)
    return Example(text=" ".join(tokens), label=list(tags), tokens=list(tokens))


def _text_to_text_row(number: int, obj: dict[str, Any]) -> Example:
    for name in ("input", "target"):
        value = obj.get(name)
        if not isinstance(value, str) or not value.strip():
            got = "is missing" if name not in obj else f"is {json.dumps(value)[:40]}"
            raise DatasetError(f'"{name}" {got}; text-to-text rows need a non-empty "input" and "target" string', number)
    if unknown := sorted(set(obj) - {"input", "target"}):
        raise DatasetError(f"has unknown field(s) {unknown}; text-to-text rows hold only \"input\" and \"target\"",
                           number)
    return Example(text=obj["input"], label=obj["target"])


def _chat_row(number: int, obj: dict[str, Any]) -> Example:
    """An OpenAI chat row: `label` holds its messages (role, content, weight: 1 unless 0 on an assistant
    turn the loss skips, as OpenAI's format allows); `text` every content joined (for counting)."""
    messages = obj["messages"]
    if unknown := sorted(set(obj) - {"messages"}):
        raise DatasetError(f"has field(s) {unknown} beside \"messages\"; tools and functions are not supported, "
                           "remove them", number)
    if not isinstance(messages, list) or not messages:
        raise DatasetError('"messages" must be a non-empty array of {"role", "content"} objects', number)
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise DatasetError(f"messages[{i}] must be an object like {{\"role\": \"user\", \"content\": \"...\"}}",
                               number)
        role, content, weight = message.get("role"), message.get("content"), message.get("weight", 1)
        if role not in CHAT_ROLES:
            raise DatasetError(f"messages[{i}].role is {json.dumps(role)[:40]}; use one of {', '.join(CHAT_ROLES)}",
                               number)
        if not isinstance(content, str):
            raise DatasetError(f"messages[{i}].content must be a string, got a JSON {_json_type(content)}", number)
        if weight not in (0, 1) or isinstance(weight, bool) or (weight == 0 and role != "assistant"):
            raise DatasetError(f"messages[{i}].weight must be 0 or 1, on an assistant message only", number)
        if unknown := sorted(set(message) - {"role", "content", "weight", "name"}):
            raise DatasetError(f"messages[{i}] has unknown field(s) {unknown}; give role, content (and weight)", number)
        out.append({"role": role, "content": content, "weight": int(weight)})
    if not any(m["role"] == "assistant" and m["weight"] and m["content"].strip() for m in out):
        raise DatasetError("has no assistant message to learn from (with content and weight 1); add the reply the "
                           'model should write as {"role": "assistant", "content": "..."}', number)
    return Example(text="\n".join(m["content"] for m in out), label=out)


def parse_example(number: int, obj: dict[str, Any], task: str | None = None) -> Example:
    """One row as an Example of `task` (None: the type the row's fields say), or a DatasetError naming
    the line and the field to fix."""
    task = task or row_task(obj)
    if task == TOKEN_CLASSIFICATION:
        return _token_row(number, obj)
    if task == TEXT_TO_TEXT:
        return _text_to_text_row(number, obj)
    if task == CHAT:
        return _chat_row(number, obj)
    text, pair = _text(number, obj)
    if task == MULTI_LABEL:
        if "label" in obj:
            raise DatasetError('has both "label" and "labels"; use "labels": [...] for multi-label rows', number)
        labels = obj["labels"]
        if not isinstance(labels, list) or not all(_is_class(label) for label in labels):
            raise DatasetError(f'"labels" must be an array of non-empty strings or integers (empty: none applies), '
                               f"got {json.dumps(labels)[:40]}", number)
        return Example(text=text, label=sorted(set(labels), key=str), text_pair=pair)
    if "label" not in obj:
        raise DatasetError('is missing the "label" field; add "label": "<class name>" (a string or an integer), '
                           'a number for regression, or "labels": [...] for multi-label', number)
    label = obj["label"]
    if task == REGRESSION:
        if isinstance(label, bool) or not isinstance(label, int | float):
            raise DatasetError(f'"label" must be a number in a regression file, got {json.dumps(label)[:40]}', number)
        if not math.isfinite(label):
            raise DatasetError(f'"label" is {label}; regression labels must be finite numbers', number)
        return Example(text=text, label=float(label), text_pair=pair)
    if not _is_class(label):
        raise DatasetError(f'"label" must be a non-empty string or an integer, got {json.dumps(label)[:40]}',
                           number)
    return Example(text=text, label=label, text_pair=pair)


def _file_task(path: Path) -> str:
    """The task type of a valid file: its first row's, or regression when any label is a fraction."""
    task = None
    for _, obj in iter_jsonl(path):
        kind = row_task(obj)
        if kind != CLASSIFICATION or task is None:
            task = kind
        if task != CLASSIFICATION:
            return task
    return task or CLASSIFICATION


def load_classification_examples(path: Path, task: str | None = None) -> list[Example]:
    """Every row of an (already validated) training file, in file order, as Examples of `task`
    (None: the file's own type)."""
    task = task or _file_task(path)
    return [parse_example(number, obj, task) for number, obj in iter_jsonl(path)]


class _Tally:
    """What validation learns row by row: the task type, pairs, labels and their counts."""

    def __init__(self) -> None:
        self.task: str | None = None
        self.first_line = 0
        self.pair_mode: bool | None = None
        self.labels: dict[str | int, int] = {}
        self.values: set[float] = set()  # regression labels (only their spread matters)
        self.n = self.chars = 0

    def row_type(self, number: int, obj: dict[str, Any]) -> str:
        """The row's type within the file: a mixed file is an error naming this line and the first."""
        kind = row_task(obj)
        if self.task is None:
            self.task, self.first_line = kind, number
        elif kind != self.task:
            numbers = {CLASSIFICATION, REGRESSION} == {kind, self.task}
            if numbers and self.task == REGRESSION and _is_class(obj.get("label")) and isinstance(obj["label"], int):
                return REGRESSION  # an integer among fractions: a number too
            if numbers and self.task == CLASSIFICATION and all(isinstance(label, int) for label in self.labels):
                self.task = REGRESSION  # integers so far, now a fraction: the labels were numbers
                self.values = {float(label) for label in self.labels}
                self.labels = {}
                return REGRESSION
            raise DatasetError(f"is {_ROW_SHAPES[kind]}, but line {self.first_line} is {_ROW_SHAPES[self.task]}; one "
                               "file holds one task type, so split it or make the rows alike", number)
        return self.task

    def add(self, number: int, example: Example) -> None:
        if example.tokens is None:
            has_pair = example.text_pair is not None
            if self.pair_mode is None:
                self.pair_mode = has_pair
            elif has_pair != self.pair_mode:
                this, other = ("has", "does not") if has_pair else ("lacks", "has one")
                raise DatasetError(f'{this} "text_pair" but line {self.first_line} {other}; use one form '
                                   "(single texts or text pairs) for the whole file", number)
        if self.task == REGRESSION:
            self.values.add(example.label)
        elif self.task in GENERATION_TYPES:
            pass  # the targets are free text: nothing to count per label
        else:
            for label in example.label if isinstance(example.label, list) else [example.label]:
                self.labels[label] = self.labels.get(label, 0) + 1
        self.n += 1
        self.chars += len(example.text) + len(example.text_pair or "")

    def summary(self) -> DatasetSummary:
        if self.n == 0:
            raise DatasetError("the file has no examples; add one JSON object per line")
        task, labels = self.task, self.labels
        if task in GENERATION_TYPES:
            return DatasetSummary(self.n, [], False, self.chars, task=task)
        if task == REGRESSION:
            if len(self.values) < 2:
                raise DatasetError(f"all {self.n} examples have the label {next(iter(self.values))}; regression "
                                   "needs labels that vary")
            return DatasetSummary(self.n, [], bool(self.pair_mode), self.chars, task=task)
        if len({type(label) for label in labels}) > 1:
            raise DatasetError('labels mix strings and integers (e.g. "1" and 1); use one type for every label')
        counts = {str(k): v for k, v in sorted(labels.items())}
        if task == TOKEN_CLASSIFICATION:
            types = sorted({tag[2:] for tag in labels if tag != "O"})
            if not types:
                raise DatasetError('every tag is "O"; mark the entities with "B-<TYPE>" / "I-<TYPE>" tags')
            return DatasetSummary(self.n, ["O", *(f"{p}-{t}" for t in types for p in "BI")], False, self.chars,
                                  counts, task)
        if len(labels) < 2:
            only = json.dumps(next(iter(labels))) if labels else "none"
            raise DatasetError(f"every example has the label {only}; a classifier needs at least 2 label classes")
        return DatasetSummary(self.n, sorted(labels), bool(self.pair_mode), self.chars, counts, task)


def validate_classification_file(path: Path, max_errors: int = 1) -> DatasetSummary:
    """Check a training file of any task type; raise DatasetError after `max_errors` row problems.

    Row problems (bad field, a row of another task type, mixed pair / non-pair rows) are collected up
    to `max_errors`; a broken line (bad UTF-8 or JSON) stops reading at once, as do whole-file problems
    (no rows, fewer than 2 label classes, string and integer labels mixed, constant regression labels).
    """
    errors: list[DatasetError] = []
    tally = _Tally()
    try:
        for number, obj in iter_jsonl(path):
            try:
                tally.add(number, parse_example(number, obj, tally.row_type(number, obj)))
            except DatasetError as exc:
                errors.append(exc)
                if len(errors) >= max(1, max_errors):
                    break
    except DatasetError as exc:  # unreadable line: nothing after it can be trusted
        errors.append(exc)
    if errors:
        raise DatasetError(errors[0].message, errors[0].line, errors[0].param, errors=errors)
    return tally.summary()

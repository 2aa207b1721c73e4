"""Examples written into cloze patterns, tokenized, and the verbalizer's words as token ids (PET, Schick &
Schütze 2021, "Exploiting Cloze Questions for Few Shot Text Classification and Natural Language Inference").

Each piece of a pattern is tokenized on its own (PET does the same), so the texts alone are truncated
to fit max_length, longest slot first, and the pattern's words and its mask always survive. One row
per example holds one sequence per pattern: `input_ids` and `attention_mask` of shape (patterns, tokens)
and `mask_positions` (patterns,), padded to (batch, patterns, tokens) by `pad`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from app.training.base import TrainingError
from app.training.strategies.cloze.patterns import MASK, Piece, split_pattern

Row = dict[str, list]


def special_frame(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after one sequence ([CLS] … [SEP], <s> … </s>)."""
    body = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(body) + 1):
        if full[start:start + len(body)] == body:
            return full[:start], full[start + len(body):]
    return [], []


def fit(lengths: list[int], budget: int) -> list[int]:
    """How many tokens each slot keeps so they fit `budget`: longest first, as `truncation=True` does."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    kept, left = [0] * len(lengths), budget
    for done, i in enumerate(order):
        kept[i] = min(lengths[i], left // (len(order) - done))
        left -= kept[i]
    return kept


def verbalizer_tokens(tokenizer: Any, labels: list, words: dict[str, str], param: str) -> list[list[int]]:
    """Each label's word as token ids (as the word reads after a space); a job whose verbalizer lacks a
    label, or has a word the vocabulary cannot spell or two labels spelled alike, fails naming `param`."""
    special = set(tokenizer.all_special_ids)
    out, seen = [], {}
    for label in labels:
        word = words.get(str(label))
        if word is None:
            raise TrainingError(f"{param} has no word for the label {str(label)!r} of the training file; map every "
                                "label to a word", code="invalid_method_settings", param=param)
        ids = tokenizer(f" {word}", add_special_tokens=False)["input_ids"]
        if not ids or any(i in special for i in ids):
            raise TrainingError(f"{param}: the word {word!r} of label {str(label)!r} is not in the base model's "
                                f"vocabulary (it tokenizes to {tokenizer.convert_ids_to_tokens(ids)}); choose a "
                                "common word", code="invalid_method_settings", param=param)
        if tuple(ids) in seen:
            raise TrainingError(f"{param}: labels {seen[tuple(ids)]!r} and {str(label)!r} have words the tokenizer "
                                "spells alike; give each label a distinct word", code="invalid_method_settings",
                                param=param)
        seen[tuple(ids)] = str(label)
        out.append(ids)
    return out


@dataclass(frozen=True)
class EncodedPattern:
    pieces: list[Piece]
    literals: list[list[int]]  # token ids of each piece's literal (empty for slots)
    fixed: int  # tokens besides the slots: literals and special tokens


class ClozeEncoder:
    """Writes examples into every pattern and tokenizes them (one row per example)."""

    def __init__(self, tokenizer: Any, patterns: list[str]):
        if tokenizer.mask_token_id is None:
            raise TrainingError("This base model's tokenizer has no mask token, so it cannot fill a cloze pattern; "
                                "choose an encoder such as BERT or MiniLM.", code="invalid_base_model", param="model")
        self.tokenizer = tokenizer
        self.prefix, self.suffix = special_frame(tokenizer)
        self.token_types = "token_type_ids" in tokenizer.model_input_names
        self.patterns = [self._encode_pattern(p) for p in patterns]

    def _encode_pattern(self, pattern: str) -> EncodedPattern:
        pieces = split_pattern(pattern)
        literals = [self._ids(p.literal.replace(MASK, self.tokenizer.mask_token)) if p.slot is None else []
                    for p in pieces]
        if sum(ids.count(self.tokenizer.mask_token_id) for ids in literals) != 1:
            raise TrainingError(f"pattern {pattern!r}: the tokenizer does not keep {MASK} as one mask token",
                                code="invalid_method_settings", param="method.cloze.patterns")
        return EncodedPattern(pieces, literals, len(self.prefix) + len(self.suffix) + sum(map(len, literals)))

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode(self, texts: list[str], pairs: list[str] | None, max_length: int) -> list[Row]:
        """One row per example: its sequence under every pattern, truncated to `max_length` tokens."""
        fields = {"text": texts, "text_pair": pairs}
        slots: dict[tuple[str, str], list[list[int]]] = {}
        for pattern in self.patterns:
            for piece in pattern.pieces:
                if piece.slot is not None and (piece.slot, piece.lead) not in slots:
                    if fields[piece.slot] is None:
                        raise ValueError(f"the patterns need a {piece.slot!r} for every example")
                    slots[piece.slot, piece.lead] = self._slot_ids([piece.lead + t for t in fields[piece.slot]])
        rows = []
        for i in range(len(texts)):
            sequences = [self._sequence(pattern, slots, i, max_length) for pattern in self.patterns]
            row: Row = {"input_ids": sequences, "attention_mask": [[1] * len(s) for s in sequences],
                        "mask_positions": [s.index(self.tokenizer.mask_token_id) for s in sequences]}
            if self.token_types:
                row["token_type_ids"] = [[0] * len(s) for s in sequences]
            rows.append(row)
        return rows

    def _slot_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids of slot texts; a mask token typed into a text is read as unknown, never as a second mask."""
        mask, unknown = self.tokenizer.mask_token_id, self.tokenizer.unk_token_id
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [[unknown if t == mask else t for t in ids] for ids in encoded]

    def _sequence(self, pattern: EncodedPattern, slots: dict, i: int, max_length: int) -> list[int]:
        filled = [slots[p.slot, p.lead][i] for p in pattern.pieces if p.slot is not None]
        budget = max_length - pattern.fixed
        if budget < len(filled):
            raise TrainingError(f"max_length {max_length} leaves no room for the text: the pattern itself takes "
                                f"{pattern.fixed} tokens; raise max_length or shorten the pattern",
                                code="invalid_method_settings", param="method.cloze.hyperparameters.max_length")
        kept = iter(fit([len(ids) for ids in filled], budget))
        texts = iter(filled)
        body = [t for p, literal in zip(pattern.pieces, pattern.literals, strict=True)
                for t in (literal if p.slot is None else next(texts)[:next(kept)])]
        return self.prefix + body + self.suffix

    def pad(self, rows: list[Row]) -> dict[str, torch.Tensor]:
        """(batch, patterns, tokens) tensors padded to the longest sequence, and mask positions (batch, patterns)."""
        width = max(len(s) for row in rows for s in row["input_ids"])
        pad_id = self.tokenizer.pad_token_id or 0
        out = {"mask_positions": torch.tensor([row["mask_positions"] for row in rows])}
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            if key in rows[0]:
                fill = pad_id if key == "input_ids" else 0
                out[key] = torch.tensor([[s + [fill] * (width - len(s)) for s in row[key]] for row in rows])
        return out

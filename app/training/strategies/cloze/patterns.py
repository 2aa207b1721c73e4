"""Cloze patterns as text (PET, Schick & Schütze 2021): `{text}`/`{text_pair}` slots and one `[MASK]`.

Torch-free: the API checks patterns at submission with `pattern_problem`; the worker splits them into
pieces with `split_pattern` and tokenizes each piece on its own, so the texts can be truncated while
the literal words and the mask always stay (app/training/strategies/cloze/encoding.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

MASK = "[MASK]"  # stands for the tokenizer's own mask token ("<mask>" for RoBERTa)
SLOTS = ("text", "text_pair")
SLOT = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class Piece:
    """A literal run of the pattern (`slot` None), or a slot filled with the example's field `slot`
    after `lead` (a space when the pattern had one before the slot)."""

    literal: str = ""
    slot: str | None = None
    lead: str = ""


def pattern_problem(pattern: str) -> str | None:
    """What is wrong with one pattern, or None: exactly one [MASK], a {text} slot, no other slots."""
    unknown = [name for name in SLOT.findall(pattern) if name not in SLOTS]
    if unknown:
        return (f"{pattern!r} has the unknown slot {{{unknown[0]}}}; the slots are {{text}} and {{text_pair}} "
                "(write other braces without a name between them)")
    masks = pattern.count(MASK)
    if masks != 1:
        return (f"{pattern!r} has {masks} {MASK}; a pattern has exactly one {MASK}, where the verbalizer's word "
                "is predicted")
    if "{text}" not in pattern:
        return f"{pattern!r} has no {{text}} slot; the example's text must appear in the pattern"
    if any(MASK in part for part in SLOT.split(pattern)[1::2]):
        return f"{pattern!r} puts {MASK} inside braces"
    return None


def slots_used(pattern: str) -> set[str]:
    return {name for name in SLOT.findall(pattern) if name in SLOTS}


def split_pattern(pattern: str) -> list[Piece]:
    """Literal runs and slots in order; empty literals are dropped. Whitespace just before a slot moves
    into the slot (as a leading space of its text), so a byte-level BPE tokenizer (RoBERTa) sees " word"
    as it would in running text."""
    pieces: list[Piece] = []
    position = 0
    for match in SLOT.finditer(pattern):
        literal = pattern[position:match.start()]
        if literal.strip():
            pieces.append(Piece(literal=literal.rstrip()))
        lead = " " if literal[-1:].isspace() and (pieces or literal.strip()) else ""
        pieces.append(Piece(slot=match.group(1), lead=lead))
        position = match.end()
    if pattern[position:]:
        pieces.append(Piece(literal=pattern[position:]))
    return pieces

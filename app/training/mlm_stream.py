"""A DAPT corpus streamed from disk: documents read lazily, tokenized and packed into fixed-length
blocks, served in a seeded order that a resumed phase replays exactly (Gururangan et al. 2020 ran
DAPT on 2-8 GB domain corpora; RoBERTa's FULL-SENTENCES packing, Liu et al. 2019).

Memory does not grow with the corpus: at most `buffer_blocks` packed blocks (the shuffle buffer)
plus one batch are held at once (`peak_blocks_held` counts them, `max_blocks_held` is the bound),
plus one tokenization group of documents and at most `MAX_HELD_OUT_DOCS` held-out documents.

Passes over the file (each streamed): one counts documents (and validates every line), one picks
the held-out documents (a seeded sample of them) and counts the training blocks, which fixes the
steps per epoch; then every epoch streams the file again. Blocks are packed in file order —
`[CLS] doc [SEP] doc [SEP] ... [SEP]`, `max_length` tokens, a document may continue in the next
block — and shuffled through a buffer of `buffer_blocks` drawn from a generator seeded with
(seed, epoch). `batch(epoch, b)` asked in order streams on; asked out of order (a resumed or
restarted run, the head warm-up before the encoder phase) it replays the epoch from its start,
tokenizing without training, so a checkpoint's (epoch, batch) position is all a resume needs.
"""
from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.training.base import TrainingError
from app.training.corpus_text import iter_texts
from app.training.data import DatasetError

MAX_HELD_OUT_DOCS = 256  # the held-out score's documents: a seeded sample, at most this many
BUFFER_BLOCKS = 1024  # the shuffle buffer's blocks (128 tokens each: ~1 MB of token ids)
TOKENIZE_GROUP = 64  # documents tokenized in one call

NO_MASKABLE_TOKENS = ("The MLM corpus has no maskable tokens: every text tokenizes to special or unknown tokens only. "
                      "Use texts in a language and script the base model's vocabulary covers.")

Row = dict[str, list[int] | list[int | None]]


def _seeded(seed: int, *salt: int) -> random.Random:
    """A generator of its own per (seed, salt...): string seeds hash the same in every process."""
    return random.Random("-".join(map(str, (seed, *salt))))


@dataclass
class PackedCorpus:
    """A corpus file as packed MLM rows; call `prepare()` once before `batch_rows`."""

    path: Path
    tokenizer: Any  # a fast HF tokenizer
    max_length: int
    batch_size: int
    seed: int
    word_ids: bool = False  # rows carry word ids (masking units whole_word, span, pmi)
    held_out_share: float = 0.05
    buffer_blocks: int = BUFFER_BLOCKS
    param: str = "method.adaptive.corpus_file"
    n_documents: int = 0
    n_blocks: int = 0
    held_out_texts: list[str] = field(default_factory=list)
    peak_blocks_held: int = 0
    _held_out: frozenset[int] = frozenset()
    _stream: Iterator[list[Row]] | None = None
    _next: tuple[int, int] | None = None

    @property
    def max_blocks_held(self) -> int:
        """The bound on packed blocks in memory at once: the shuffle buffer and one batch."""
        return self.buffer_blocks + self.batch_size

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.n_blocks // self.batch_size)

    def prepare(self) -> PackedCorpus:
        """Validate and count the corpus, choose the held-out documents, count the training blocks."""
        try:
            self.n_documents = sum(1 for _ in iter_texts(self.path))
        except DatasetError as exc:
            raise TrainingError(f"{self.param}: {exc}", code="invalid_corpus", param=self.param) from exc
        if self.n_documents < 2:
            raise TrainingError(f"{self.param}: the corpus has {self.n_documents} non-blank document(s); "
                                "masked-language-model training needs at least 2 (one is held out to score "
                                "the model)", code="invalid_corpus", param=self.param)
        n_held = min(self.n_documents - 1, MAX_HELD_OUT_DOCS,
                     max(1, round(self.held_out_share * self.n_documents)))
        self._held_out = frozenset(_seeded(self.seed, 0).sample(range(self.n_documents), n_held))
        self.held_out_texts = [t for i, t in zip(range(max(self._held_out) + 1), iter_texts(self.path))
                               if i in self._held_out]
        special, maskable = set(self.tokenizer.all_special_ids), False
        for row in self._packed():
            self.n_blocks += 1
            maskable = maskable or any(t not in special for t in row["input_ids"])
        if not maskable:
            raise TrainingError(NO_MASKABLE_TOKENS, code="invalid_corpus", param=self.param)
        return self

    def batch_rows(self, epoch: int, b: int) -> list[Row]:
        """The rows of batch `b` of `epoch` (the same for the same arguments, whatever was asked before)."""
        if self._next != (epoch, b):
            self._stream = self._batches(epoch)
            for _ in range(b):  # replay up to the asked batch
                next(self._stream)
        rows = next(self._stream)
        self._next = (epoch, b + 1)
        return rows

    def _batches(self, epoch: int) -> Iterator[list[Row]]:
        rng, buffer, batch = _seeded(self.seed, 1, epoch), [], []

        def held(extra: int) -> None:
            self.peak_blocks_held = max(self.peak_blocks_held, len(buffer) + len(batch) + extra)

        def emit(row: Row) -> Iterator[list[Row]]:
            nonlocal batch
            batch.append(row)
            if len(batch) == self.batch_size:
                held(0)
                out, batch = batch, []
                yield out

        for row in self._packed():
            if len(buffer) < self.buffer_blocks:
                buffer.append(row)
                held(0)
                continue
            j = rng.randrange(len(buffer))
            held(1)
            out, buffer[j] = buffer[j], row
            yield from emit(out)
        rng.shuffle(buffer)
        while buffer:
            yield from emit(buffer.pop())
        if batch:
            yield batch

    def _packed(self) -> Iterator[Row]:
        """Training blocks in file order: documents (held-out ones skipped) joined by [SEP]."""
        tok = self.tokenizer
        width = self.max_length - 2
        ids: list[int] = []
        words: list[int | None] = []
        next_word = 0
        for group in self._groups():
            encoded = tok(group, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False,
                          verbose=False)  # documents longer than the model takes are cut into blocks below
            for i, doc in enumerate(encoded["input_ids"]):
                ids.extend(doc)
                ids.append(tok.sep_token_id)
                if self.word_ids:
                    doc_words = encoded.word_ids(i)
                    words.extend(None if w is None else w + next_word for w in doc_words)
                    words.append(None)
                    next_word += max((w for w in doc_words if w is not None), default=-1) + 1
                while len(ids) >= width:
                    yield self._row(ids[:width], words[:width])
                    del ids[:width]
                    del words[:width]
        if ids:
            yield self._row(ids, words)

    def train_texts(self) -> Iterator[str]:
        """The documents trained on (the held-out ones skipped), in file order."""
        return (text for i, text in enumerate(iter_texts(self.path)) if i not in self._held_out)

    def _groups(self) -> Iterator[list[str]]:
        group: list[str] = []
        for text in self.train_texts():
            group.append(text)
            if len(group) == TOKENIZE_GROUP:
                yield group
                group = []
        if group:
            yield group

    def _row(self, ids: list[int], words: list[int | None]) -> Row:
        tok = self.tokenizer
        row: Row = {"input_ids": [tok.cls_token_id, *ids, tok.sep_token_id], "attention_mask": [1] * (len(ids) + 2),
                    "special_tokens_mask": [1, *(int(t == tok.sep_token_id) for t in ids), 1]}
        if self.word_ids:
            row["word_ids"] = [None, *words, None]
        return row

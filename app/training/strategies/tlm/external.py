"""S, the retrieved external documents, on disk: one JSON string per line and an offsets array, so
training reads the documents of one batch at a time and S is never all in memory (Yao et al. 2022
retrieve up to tens of millions of tokens per task)."""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

TEXTS, OFFSETS = "external.jsonl", "external_offsets.npy"


def write_external(directory: Path, texts: Iterable[str]) -> int:
    """Stream `texts` to `directory`; returns how many were written."""
    offsets, position = [], 0
    with open(directory / TEXTS, "wb") as f:
        for text in texts:
            line = (json.dumps(text, ensure_ascii=False) + "\n").encode()
            offsets.append(position)
            f.write(line)
            position += len(line)
    np.save(directory / OFFSETS, np.asarray(offsets + [position], dtype=np.int64))
    return len(offsets)


class ExternalTexts:
    """Read access to a written S by position; `order(p)` is pass p's seeded shuffle."""

    def __init__(self, directory: Path, seed: int):
        self.path, self.seed = directory / TEXTS, seed
        self.offsets = np.load(directory / OFFSETS)
        self.order = lru_cache(maxsize=2)(self._order)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def _order(self, p: int) -> np.ndarray:
        return np.random.default_rng(self.seed * 1_000_003 + p).permutation(len(self))

    def get(self, positions: Iterable[int]) -> list[str]:
        out = []
        with open(self.path, "rb") as f:
            for i in positions:
                f.seek(int(self.offsets[i]))
                out.append(json.loads(f.read(int(self.offsets[i + 1] - self.offsets[i]))))
        return out

    def batch_texts(self, g: int, batch_size: int) -> list[str]:
        """The texts of external batch g: items g·B … g·B + B − 1 of the endless sequence of shuffled
        passes over S, so any batch is found again from its number alone (an exact resume)."""
        n = len(self)
        return self.get(int(self.order(k // n)[k % n]) for k in range(g * batch_size, (g + 1) * batch_size))

    def __iter__(self) -> Iterator[str]:
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                yield json.loads(line)

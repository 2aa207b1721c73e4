"""Which rows form each batch, and how a batch is split across micro-batches and processes.

Length grouping (the Hugging Face Trainer's `group_by_length`, LengthGroupedSampler): each epoch's seeded
permutation is cut into megabatches of `MEGABATCH × batch_size` rows, each megabatch is sorted by length
(longest first) and cut into batches; the batch holding the longest row comes first (an out-of-memory
error shows at step 1, not late). Rows of similar length share a batch, so dynamic padding (each batch is
padded to its own longest row, app.training.tasks.base.Rows) pads little, while the permutation keeps the
order random, seeded (seed + epoch) and therefore resumable mid-epoch.
"""
from __future__ import annotations

import torch

Batch = dict[str, torch.Tensor]
MEGABATCH = 50  # HF's mega_batch_mult: batches per megabatch (fewer when the data is small)


def length_grouped_order(lengths: list[int], batch_size: int, generator: torch.Generator) -> list[int]:
    """A permutation of range(len(lengths)) whose consecutive `batch_size` slices hold similar lengths."""
    n = len(lengths)
    mult = max(1, min(MEGABATCH, n // (batch_size * 4)))
    size = mult * batch_size
    order = torch.randperm(n, generator=generator).tolist()
    megabatches = [sorted(order[i:i + size], key=lambda row: -lengths[row]) for i in range(0, n, size)]
    longest = max(range(len(megabatches)), key=lambda m: lengths[megabatches[m][0]])
    megabatches[0][0], megabatches[longest][0] = megabatches[longest][0], megabatches[0][0]
    return [row for megabatch in megabatches for row in megabatch]


def n_rows(batch: Batch) -> int:
    return next(iter(batch.values())).shape[0]


def split_batch(batch: Batch, parts: int) -> list[Batch]:
    """`batch` cut along its rows into `parts` micro-batches of near-equal size (empty ones dropped); each
    keeps the batch's padded width."""
    if parts == 1:
        return [batch]
    pieces = {key: torch.tensor_split(value, parts) for key, value in batch.items()}
    return [piece for piece in ({key: pieces[key][i] for key in batch} for i in range(parts)) if n_rows(piece)]

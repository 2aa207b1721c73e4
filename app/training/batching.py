"""Which rows form each batch, and how a batch is split across micro-batches and processes.

Length grouping (the Hugging Face Trainer's `group_by_length`, LengthGroupedSampler): each epoch's seeded
permutation is cut into megabatches of `MEGABATCH × batch_size` rows, each megabatch is sorted by length
(longest first) and cut into batches; the batch holding the longest row comes first (an out-of-memory
error shows at step 1, not late). Rows of similar length share a batch, so dynamic padding (each batch is
padded to its own longest row, app.training.tasks.base.Rows) pads little, while the permutation keeps the
order random, seeded (seed + epoch) and therefore resumable mid-epoch.

"auto" groups only where it pays: when random batches would pad at least MIN_WASTE of their tokens and rows
reach MIN_LONGEST tokens. Grouping makes batches less diverse — where length goes with the label it costs
accuracy (the tests' toy regression, whose length is 3 + the counted words, fell from Pearson 0.91 to 0.77)
— so short texts, whose padding costs little time, keep plain random batches.
"""
from __future__ import annotations

import torch

Batch = dict[str, torch.Tensor]
MEGABATCH = 50  # HF's mega_batch_mult: batches per megabatch (fewer when the data is small)
MIN_WASTE = 0.25  # "auto" groups when random batches would pad at least this share of their real tokens
MIN_LONGEST = 64  # … and the longest row has at least this many tokens


def padding_waste(lengths: list[int], batch_size: int, seed: int) -> float:
    """Padding tokens per real token of one seeded random order's batches."""
    order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed)).tolist()
    batches = [[lengths[r] for r in order[i:i + batch_size]] for i in range(0, len(order), batch_size)]
    return sum(max(b) * len(b) for b in batches) / max(1, sum(lengths)) - 1


def length_grouping(setting: bool | str, lengths: list[int], batch_size: int, seed: int) -> tuple[bool, str]:
    """Whether to group by length, and why (for the job's events)."""
    if setting != "auto":
        return bool(setting), "as asked"
    waste, longest = padding_waste(lengths, batch_size, seed), max(lengths, default=0)
    grouped = waste >= MIN_WASTE and longest >= MIN_LONGEST
    return grouped, (f"auto: random batches would pad {waste:.0%} of their tokens, the longest row has {longest} "
                     f"(grouping from {MIN_WASTE:.0%} and {MIN_LONGEST} tokens)")


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

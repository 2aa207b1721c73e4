"""Which rows form each batch, and how a batch is split across micro-batches and processes.

Length grouping (the Hugging Face Trainer's `group_by_length`, LengthGroupedSampler): each epoch's seeded
permutation is cut into megabatches of `MEGABATCH × batch_size` rows, each megabatch is sorted by length
(longest first) and cut into batches, and the batches are shuffled; the batch holding the longest row
comes first (an out-of-memory error shows at step 1, not late). Rows of similar length share a batch, so
dynamic padding (each batch is padded to its own longest row, app.training.tasks.base.Rows) pads little,
while the permutation keeps the order random, seeded (seed + epoch) and therefore resumable mid-epoch.
Shuffling the batches matters: the Trainer's sampler leaves each megabatch's batches in length order, so
a run sees long, then shorter, then short batches, a dozen at a time; with BitFit's high rate (1e-2) on
minilm-l6 and 1,000 election tweets, seeds 0 and 2 collapsed to one class that way (test 50.05%), and
reached 92.9% and 92.8% with the batches shuffled (bench/results/peft-tweets.jsonl).

"auto" groups only where it pays: when random batches would pad at least MIN_WASTE of their tokens and rows
reach MIN_LONGEST tokens. Grouping makes batches less diverse — where length goes with the label it costs
accuracy (the tests' toy regression, whose length is 3 + the counted words, fell from Pearson 0.91 to 0.77)
— so short texts, whose padding costs little time, keep plain random batches.
"""
from __future__ import annotations

import torch

Batch = dict[str, torch.Tensor]
IGNORED = -100  # the label id the transformers losses skip (sub-tokens after a word's first, specials, padding)
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
    """A permutation of range(len(lengths)) whose consecutive `batch_size` slices hold similar lengths, the
    batches themselves in random order (the longest first; a short last batch stays last)."""
    n = len(lengths)
    mult = max(1, min(MEGABATCH, n // (batch_size * 4)))
    size = mult * batch_size
    order = torch.randperm(n, generator=generator).tolist()
    megabatches = [sorted(order[i:i + size], key=lambda row: -lengths[row]) for i in range(0, n, size)]
    batches = [m[i:i + batch_size] for m in megabatches for i in range(0, len(m), batch_size)]
    short = [batches.pop()] if len(batches[-1]) < batch_size and len(batches) > 1 else []
    batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    longest = max(range(len(batches)), key=lambda b: lengths[batches[b][0]])
    batches[0], batches[longest] = batches[longest], batches[0]
    return [row for batch in batches + short for row in batch]


def n_rows(batch: Batch) -> int:
    return next(iter(batch.values())).shape[0]


def loss_units(batch: Batch) -> int:
    """What the batch's mean loss averages over: its scored tokens where labels are per token (MLM, NER:
    integer labels with IGNORED positions), else its rows. Weighting a micro-batch's or a rank's loss by its
    share of these makes the summed gradient the whole batch's (the Hugging Face Trainer's num_items_in_batch);
    by rows, shards with more masked tokens would count as much as ones with fewer."""
    labels = batch.get("labels")
    if labels is not None and labels.dim() == 2 and not labels.is_floating_point():
        return int((labels != IGNORED).sum())
    return n_rows(batch)


def split_batch(batch: Batch, parts: int) -> list[Batch]:
    """`batch` cut along its rows into `parts` micro-batches of near-equal size (empty ones dropped); each
    keeps the batch's padded width."""
    if parts == 1:
        return [batch]
    pieces = {key: torch.tensor_split(value, parts) for key, value in batch.items()}
    return [piece for piece in ({key: pieces[key][i] for key in batch} for i in range(parts)) if n_rows(piece)]

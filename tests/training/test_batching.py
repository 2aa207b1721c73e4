"""Length-grouped batches: seeded, a permutation, less padding, and resumable mid-epoch."""
from __future__ import annotations

import random

import torch

from app.training.batching import length_grouped_order, length_grouping, split_batch
from app.training.checkpoints import latest_complete_checkpoint
from app.training.config import Hyperparameters
from app.training.engine import epoch_batches
from app.training.registry import run_strategy
from tests.tiny_models import FILLER, NEGATIVE, POSITIVE
from tests.training.conftest import ListSink
from tests.training.test_resume import _assert_same_weights


def _padding(order: list[int], lengths: list[int], batch: int) -> int:
    slices = [order[i:i + batch] for i in range(0, len(order), batch)]
    return sum(max(lengths[r] for r in s) * len(s) - sum(lengths[r] for r in s) for s in slices)


def test_grouped_order_is_a_seeded_permutation_that_pads_less():
    lengths = [random.Random(i).randint(3, 120) for i in range(1000)]
    hp = Hyperparameters(n_epochs=2, batch_size=8, learning_rate=1e-3, seed=3)
    grouped, shuffled = epoch_batches(1000, hp, lengths), epoch_batches(1000, hp)
    first = [r for b in range(125) for r in grouped(0, b)]
    assert sorted(first) == list(range(1000))
    assert first == [r for b in range(125) for r in epoch_batches(1000, hp, lengths)(0, b)]  # seeded
    assert first != [r for b in range(125) for r in grouped(1, b)]  # a new order each epoch
    assert lengths[first[0]] == max(lengths)  # the longest batch first: out-of-memory shows at step 1
    plain = [r for b in range(125) for r in shuffled(0, b)]
    assert _padding(first, lengths, 8) < 0.2 * _padding(plain, lengths, 8)
    small = length_grouped_order([5, 1, 9], 8, torch.Generator().manual_seed(0))  # fewer rows than a batch
    assert sorted(small) == [0, 1, 2]


def test_grouped_batches_come_in_random_order_and_a_short_batch_last():
    """Not a megabatch's batches longest to shortest in a row (the Trainer's order), which made BitFit's
    high rate collapse; the one short batch stays last, so every slice of batch_size is one batch."""
    lengths = [random.Random(i).randint(3, 120) for i in range(1003)]
    order = length_grouped_order(lengths, 8, torch.Generator().manual_seed(1))
    assert sorted(order) == list(range(1003)) and lengths[order[0]] == max(lengths)
    tops = [max(lengths[r] for r in order[i:i + 8]) for i in range(0, 1000, 8)]
    assert sum(a < b for a, b in zip(tops, tops[1:])) > len(tops) // 4  # a sorted run would rise ~once a megabatch
    tail = [lengths[r] for r in order[1000:]]  # the short batch: the end of the last (sorted) megabatch
    assert tail == sorted(tail, reverse=True)
    spread = [max(lengths[r] for r in order[i:i + 8]) - min(lengths[r] for r in order[i:i + 8]) for i in range(0, 1000, 8)]
    assert sum(spread) / len(spread) < 10  # still grouped: similar lengths within each batch


def test_auto_groups_only_where_random_batches_pad_much_of_long_rows():
    varied_long = [random.Random(i).randint(10, 200) for i in range(256)]
    assert length_grouping("auto", varied_long, 16, 0)[0]
    assert not length_grouping("auto", [random.Random(i).randint(5, 9) for i in range(256)], 16, 0)[0]  # short
    assert not length_grouping("auto", [120 + i % 8 for i in range(256)], 16, 0)[0]  # long, alike: little padding
    assert length_grouping(True, [7] * 10, 4, 0) == (True, "as asked")
    assert "would pad" in length_grouping("auto", varied_long, 16, 0)[1]


def test_split_batch_keeps_rows_and_drops_empty_parts():
    batch = {"input_ids": torch.arange(12).view(3, 4), "labels": torch.arange(3)}
    parts = split_batch(batch, 4)
    assert [p["labels"].tolist() for p in parts] == [[0], [1], [2]]
    assert all(p["input_ids"].shape[1] == 4 for p in parts)


def test_pause_and_resume_mid_epoch_with_grouped_lengths(make_ctx):
    rng = random.Random(0)
    rows = [{"text": " ".join(rng.sample(FILLER, rng.randint(1, 12)) + [rng.choice(POSITIVE if i % 2 else NEGATIVE)]),
             "label": "pos" if i % 2 else "neg"} for i in range(24)]
    common = dict(train_rows=rows, n_epochs=2, group_by_length=True)
    straight = make_ctx("bitfit", output="straight", **common)
    run_strategy(straight)
    paused = make_ctx("bitfit", output="resumed", sink=ListSink(stop_at_step=4, stop_reason="pause"), **common)
    assert run_strategy(paused).status == "paused"
    resumed = make_ctx("bitfit", output="resumed", resume_from=latest_complete_checkpoint(paused.checkpoint_dir), **common)
    assert run_strategy(resumed).steps == 6
    _assert_same_weights(straight, resumed, "bitfit")

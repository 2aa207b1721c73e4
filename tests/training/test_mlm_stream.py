"""DAPT over a corpus streamed from disk (app.training.mlm_stream): bounded memory whatever the corpus
size, a seeded order that replays exactly, and a phase SIGKILLed mid-epoch that resumes to the weights
of an uninterrupted run."""
from __future__ import annotations

import gzip
import json
import os
import random
import signal
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from app.training.base import TrainingError
from app.training.checkpoints import latest_complete_checkpoint
from app.training.config import Hyperparameters
from app.training.masking import MaskingSettings
from app.training.mlm import MlmPhase, run_mlm
from app.training.mlm_stream import PackedCorpus
from tests.tiny_models import COMMON, NEGATIVE, POSITIVE
from tests.training.conftest import ListSink

ROOT = Path(__file__).resolve().parents[2]


def write_corpus(path: Path, n: int, seed: int = 0, gz: bool = False) -> Path:
    """`n` documents of 5-40 words, one per line (documents span block boundaries at max_length 16)."""
    rng = random.Random(seed)
    words = POSITIVE + NEGATIVE + COMMON
    lines = "".join(" ".join(rng.choice(words) for _ in range(rng.randint(5, 40))) + "\n" for _ in range(n))
    path.write_bytes(gzip.compress(lines.encode()) if gz else lines.encode())
    return path


def packed(tiny_model_dir, path: Path, **options) -> PackedCorpus:
    from transformers import AutoTokenizer

    settings = {"max_length": 16, "batch_size": 4, "seed": 5, "buffer_blocks": 8, "held_out_share": 0.002, **options}
    return PackedCorpus(path, AutoTokenizer.from_pretrained(tiny_model_dir), **settings).prepare()


def every_batch(corpus: PackedCorpus, epoch: int) -> list[list[int]]:
    return [row["input_ids"] for b in range(corpus.steps_per_epoch) for row in corpus.batch_rows(epoch, b)]


def test_blocks_held_stay_bounded_as_the_corpus_grows(tiny_model_dir, tmp_path):
    """The bound holds and is independent of size: a corpus with 10× more blocks than the bound, and
    one 4× larger still, hold at most buffer + batch blocks at once and allocate no more at peak."""
    peaks = {}
    for n in (300, 1200):
        corpus = packed(tiny_model_dir, write_corpus(tmp_path / f"c{n}.txt", n))
        assert corpus.n_blocks >= 10 * corpus.max_blocks_held == 10 * (8 + 4)
        tracemalloc.start()
        seen = sum(len(rows) for rows in (corpus.batch_rows(0, b) for b in range(corpus.steps_per_epoch)))
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert seen == corpus.n_blocks
        assert 8 < corpus.peak_blocks_held <= corpus.max_blocks_held
    # holding the tokenized corpus would peak ~4× higher; streaming peaks alike (tokenizer groups, buffer)
    assert peaks[1200] < 1.5 * peaks[300], peaks


def test_order_is_seeded_complete_and_replayable(tiny_model_dir, tmp_path):
    path = write_corpus(tmp_path / "c.txt.gz", 200, gz=True)  # gzip streams the same way
    corpus = packed(tiny_model_dir, path)
    first, second = every_batch(corpus, 0), every_batch(corpus, 1)
    assert sorted(map(tuple, first)) == sorted(map(tuple, second))  # each epoch: every block once
    assert first != second  # in another order
    assert every_batch(packed(tiny_model_dir, path), 0) == first  # same seed, same order
    assert every_batch(packed(tiny_model_dir, path, seed=6), 0) != first
    # asked out of order (a resumed run), a batch is the one the uninterrupted pass served
    assert [r["input_ids"] for r in corpus.batch_rows(0, 7)] == first[28:32]
    assert [r["input_ids"] for r in corpus.batch_rows(1, 3)] == second[12:16]
    held = {tuple(corpus.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in corpus.held_out_texts}
    assert held and not any(h == tuple(b[1:1 + len(h)]) for h in held for b in first if len(h) < 10)


@pytest.mark.parametrize(("content", "says"), [
    (b"", "at least 2"), (b"one document only\n", "at least 2"), (b"\x00\x01binary", "binary"),
    ("caf\u00e9\n".encode("latin-1") * 3, "UTF-8"), ("[SEP] [CLS]\n[MASK]\n".encode(), "no maskable tokens")])
def test_unusable_streamed_corpus_fails_naming_the_field(content, says, tiny_model_dir, tmp_path):
    (tmp_path / "bad.txt").write_bytes(content)
    with pytest.raises(TrainingError) as info:
        packed(tiny_model_dir, tmp_path / "bad.txt")
    assert info.value.code == "invalid_corpus" and says in info.value.message


def stream_phase(tiny_model_dir, corpus: Path, out: Path, sink=None, resume_from=None, **masking) -> MlmPhase:
    hp = Hyperparameters(n_epochs=2, batch_size=4, learning_rate=5e-3, seed=3, max_length=16, checkpoint_every=3)
    return MlmPhase(texts=[], corpus_path=corpus, masking=MaskingSettings(**masking), hyperparameters=hp,
                    base_path=tiny_model_dir, output_dir=out, checkpoint_dir=out.with_name(out.name + "-ckpt"),
                    sink=sink or ListSink(), resume_from=resume_from, buffer_blocks=4)


KILL_AT_CHECKPOINT = """
import os, signal, sys
from pathlib import Path
from tests.training.test_mlm_stream import stream_phase
from tests.training.conftest import ListSink
from app.training.mlm import run_mlm

class DiesAfterCheckpoint(ListSink):
    def checkpoint(self, step, path, metrics):
        if step == int(sys.argv[4]):
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, as when the OOM killer or an operator ends a worker
run_mlm(stream_phase(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sink=DiesAfterCheckpoint(),
                     unit="whole_word"))
"""


def test_sigkilled_streamed_phase_resumes_to_the_uninterrupted_weights(tiny_model_dir, tmp_path):
    """120 documents → about 30 blocks of 16 tokens, 8 steps an epoch, trained on holding at most 8 blocks
    (buffer 4 + batch 4); the worker dies right after the checkpoint of step 9 (mid-epoch 2) and a new
    process resumes from it."""
    corpus = write_corpus(tmp_path / "c.txt", 120)
    straight = run_mlm(stream_phase(tiny_model_dir, corpus, tmp_path / "straight", unit="whole_word"))
    assert straight.run.status == "succeeded" and straight.packed.steps_per_epoch > 6
    assert straight.packed.peak_blocks_held <= straight.packed.max_blocks_held == 8
    assert straight.packed.n_blocks >= 3 * straight.packed.max_blocks_held
    assert straight.after["mlm_loss"] < straight.before["mlm_loss"]
    killed = subprocess.run([sys.executable, "-c", KILL_AT_CHECKPOINT, str(tiny_model_dir), str(corpus),
                             str(tmp_path / "resumed"), "9"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT),  # the same float sums as this process:
                                 "OMP_NUM_THREADS": str(torch.get_num_threads())})  # its thread count
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    checkpoint = latest_complete_checkpoint(tmp_path / "resumed-ckpt")
    assert json.loads((checkpoint / "state.json").read_text())["step"] == 9
    resumed = run_mlm(stream_phase(tiny_model_dir, corpus, tmp_path / "resumed", resume_from=checkpoint,
                                   unit="whole_word"))
    assert resumed.run.status == "succeeded" and resumed.run.step == straight.run.step
    a, b = load_file(tmp_path / "straight" / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors")
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    assert resumed.after["mlm_loss"] == pytest.approx(straight.after["mlm_loss"], abs=1e-6)
    assert torch.isfinite(torch.tensor(resumed.after["mlm_loss"]))


def test_resume_over_another_corpus_is_refused(tiny_model_dir, tmp_path):
    """The checkpoint records the corpus's shape: the same (epoch, batch) of other blocks is not a resume."""
    corpus = write_corpus(tmp_path / "c.txt", 60)
    paused = run_mlm(stream_phase(tiny_model_dir, corpus, tmp_path / "out", sink=ListSink(stop_at_step=2,
                                                                                          stop_reason="pause")))
    assert paused.run.status == "paused"
    write_corpus(corpus, 90, seed=1)
    with pytest.raises(TrainingError) as info:
        run_mlm(stream_phase(tiny_model_dir, corpus, tmp_path / "out",
                             resume_from=latest_complete_checkpoint(tmp_path / "out-ckpt")))
    assert info.value.code == "invalid_checkpoint" and "corpus_blocks" in info.value.message

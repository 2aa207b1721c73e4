"""Continued MLM pretraining on the tiny BERT: it learns, it resumes exactly, it refuses bad corpora."""
from __future__ import annotations

import random

import pytest
import torch
from safetensors.torch import load_file

from app.training.base import TrainingError
from app.training.config import Hyperparameters
from app.training.checkpoints import latest_complete_checkpoint
from app.training.masking import MaskingSettings
from app.training.mlm import MlmPhase, run_mlm, split_held_out
from tests.tiny_models import NEGATIVE, POSITIVE
from tests.training.conftest import ListSink


def corpus(n: int = 96, seed: int = 0) -> list[str]:
    """Texts with a learnable pattern: each draws its words from one fixed vocabulary."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(POSITIVE if i % 2 else NEGATIVE) for _ in range(10)) for i in range(n)]


def phase(base: str, tmp_path, name: str, texts=None, sink=None, resume_from=None, **masking) -> MlmPhase:
    hp = Hyperparameters(n_epochs=2, batch_size=16, learning_rate=5e-3, seed=3, max_length=16)
    return MlmPhase(texts=texts if texts is not None else corpus(), masking=MaskingSettings(**masking),
                    hyperparameters=hp, base_path=base, output_dir=tmp_path / name, checkpoint_dir=tmp_path / f"{name}-ckpt",
                    sink=sink or ListSink(), resume_from=resume_from)


def test_mlm_lowers_held_out_loss_and_saves_a_loadable_encoder(tiny_model_dir, tmp_path):
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    done = run_mlm(phase(tiny_model_dir, tmp_path, "out", mask_rate=0.4))
    assert done.run.status == "succeeded"
    assert done.after["mlm_loss"] < done.before["mlm_loss"] - 0.5, (done.before, done.after)
    assert done.after["mlm_accuracy"] > done.before["mlm_accuracy"]
    AutoModelForMaskedLM.from_pretrained(tmp_path / "out")
    # a base for task jobs, with the base's pooler kept (not re-initialised) and no NSP head carried over
    task, info = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out", num_labels=2,
                                                                    output_loading_info=True)
    assert set(info["missing_keys"]) == {"classifier.weight", "classifier.bias"}
    base = load_file(tiny_model_dir / "model.safetensors")
    assert torch.equal(task.bert.pooler.dense.weight, base["bert.pooler.dense.weight"])
    assert not any(k.startswith("cls.seq_relationship") for k in load_file(tmp_path / "out" / "model.safetensors"))


@pytest.mark.parametrize("unit", ["whole_word", "span", "pmi"])
def test_every_masking_unit_trains(unit, tiny_model_dir, tmp_path):
    options = {"pmi_min_count": 2} if unit == "pmi" else {}
    done = run_mlm(phase(tiny_model_dir, tmp_path, "out", unit=unit, **options))
    assert done.run.status == "succeeded" and done.after["mlm_loss"] < done.before["mlm_loss"]


def test_paused_phase_resumes_to_the_same_weights(tiny_model_dir, tmp_path):
    """96 texts, 5 held out: 91 / 16 = 6 steps an epoch; pause after step 8 (mid-epoch 2)."""
    straight = run_mlm(phase(tiny_model_dir, tmp_path, "straight", unit="span"))
    paused = run_mlm(phase(tiny_model_dir, tmp_path, "resumed", unit="span",
                           sink=ListSink(stop_at_step=8, stop_reason="pause")))
    assert paused.run.status == "paused" and paused.run.step == 8
    checkpoint = latest_complete_checkpoint(tmp_path / "resumed-ckpt")
    resumed = run_mlm(phase(tiny_model_dir, tmp_path, "resumed", unit="span", resume_from=checkpoint))
    assert resumed.run.status == "succeeded" and resumed.run.step == straight.run.step == 12
    assert_same_phase_result(tmp_path / "straight", tmp_path / "resumed", straight, resumed)


def assert_same_phase_result(a_dir, b_dir, a, b) -> None:
    """Two MLM phases ended on the same weights (within 1e-6) and the same held-out loss."""
    first, second = load_file(a_dir / "model.safetensors"), load_file(b_dir / "model.safetensors")
    assert first.keys() == second.keys()
    for key in first:
        assert (first[key] - second[key]).abs().max().item() <= 1e-6, key
    assert b.after["mlm_loss"] == pytest.approx(a.after["mlm_loss"], abs=1e-6)


def test_missing_mlm_head_is_initialised_and_reported(tiny_model_dir, tmp_path):
    """Like minilm-l6, a checkpoint saved without the MLM head: a warning event, then training."""
    from transformers import AutoTokenizer, BertModel

    headless = tmp_path / "headless"
    BertModel.from_pretrained(tiny_model_dir).save_pretrained(headless)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(headless)
    sink = ListSink()
    done = run_mlm(phase(headless, tmp_path, "out", sink=sink))
    assert done.run.status == "succeeded"
    assert any("lacks" in m and "MLM-head weights" in m for m in sink.of("message"))
    saved = load_file(tmp_path / "out" / "model.safetensors")  # the bare checkpoint's pooler, now prefixed
    assert torch.equal(saved["bert.pooler.dense.weight"], load_file(headless / "model.safetensors")["pooler.dense.weight"])


def test_held_out_split_is_seeded_and_never_empty():
    texts = [f"t{i}" for i in range(40)]
    train, held = split_held_out(texts, 0.05, seed=1)
    assert len(held) == 2 and sorted(train + held) == sorted(texts)
    assert split_held_out(texts, 0.05, seed=1) == (train, held)
    assert split_held_out(["a", "b"], 0.5, seed=0)[0]  # one text is always left to train on


@pytest.mark.parametrize(("texts", "masking", "code"), [
    (["only one text"], {}, "invalid_corpus"),
    (["[SEP] [CLS]", "[MASK]", "[PAD] [SEP]"], {}, "invalid_corpus"),  # nothing but special tokens
    (corpus(8), {"unit": "pmi", "pmi_min_count": 1000}, "invalid_method_settings"),
])
def test_unusable_corpus_fails_with_an_actionable_error(texts, masking, code, tiny_model_dir, tmp_path):
    with pytest.raises(TrainingError) as info:
        run_mlm(phase(tiny_model_dir, tmp_path, "out", texts=texts, **masking))
    assert info.value.code == code and len(info.value.message) > 20


def test_cancel_saves_nothing(tiny_model_dir, tmp_path):
    done = run_mlm(phase(tiny_model_dir, tmp_path, "out", sink=ListSink(stop_at_step=2)))
    assert done.run.status == "cancelled" and not (tmp_path / "out").exists()
    assert torch.isfinite(torch.tensor(done.before["mlm_loss"]))


@pytest.mark.parametrize("unit", ["token", "span"])
def test_head_on_predicted_positions_only_gives_the_stock_loss(unit, tiny_model_dir):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from app.training.masking import MlmCollator
    from app.training.mlm import PredictedPositionsOnly

    model = AutoModelForMaskedLM.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    batch = MlmCollator(tokenizer, MaskingSettings(mask_rate=0.3, unit=unit), generator=torch.Generator().manual_seed(0))(corpus(8))
    sparse = PredictedPositionsOnly(model)
    assert sparse.head is model.cls
    with torch.no_grad():
        assert sparse(**batch).loss.item() == pytest.approx(model(**batch).loss.item(), abs=1e-5)
        nothing = {**batch, "labels": torch.full_like(batch["labels"], -100)}
        assert sparse(**nothing).loss.item() == 0.0


@pytest.mark.parametrize("streamed", [False, True])
def test_masking_seed_drives_the_masks(streamed, tiny_model_dir, tmp_path, monkeypatch):
    """mlm.seed chooses the training masks: the same seed masks the same tokens, another seed others,
    and no seed means the job's seed (3 here); also for a corpus streamed from disk (DAPT)."""
    import dataclasses

    import app.training.mlm as mlm

    drawn: list[torch.Tensor] = []

    class Recording(mlm.MlmCollator):
        def __call__(self, features):
            batch = super().__call__(features)
            drawn.append(batch["labels"].clone())
            return batch

    monkeypatch.setattr(mlm, "MlmCollator", Recording)

    corpus_file = tmp_path / "corpus.txt"
    corpus_file.write_text("".join(f"{text}\n" for text in corpus()))

    def masks(name: str, **masking) -> list[torch.Tensor]:
        drawn.clear()
        run = phase(tiny_model_dir, tmp_path, name, **masking)
        if streamed:
            run = dataclasses.replace(run, texts=[], corpus_path=corpus_file)
        assert run_mlm(run).run.status == "succeeded"
        return list(drawn)

    first, again, other, default = masks("a", seed=11), masks("b", seed=11), masks("c", seed=12), masks("d")
    assert len(first) == len(again) == len(other) > 10  # held-out batches, then every training batch
    assert all(torch.equal(x, y) for x, y in zip(first, again, strict=True))
    held = 1  # the held-out batch keeps the job's seed, so runs differing in mlm.seed are scored alike
    assert torch.equal(first[0], other[0]) and torch.equal(first[0], default[0])
    assert not any(torch.equal(x, y) for x, y in zip(first[held:], other[held:], strict=True))
    assert all(torch.equal(x, y) for x, y in zip(default, masks("e", seed=3), strict=True))

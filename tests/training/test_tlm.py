"""TLM (Yao et al. 2022) on the tiny preset over a real tantivy index of a toy corpus: what BM25 retrieves,
the interleaving of external and internal batches, the loss weighting, stage 2, random retrieval, the
tokenizer trained for the job, pause/resume, and the artifact reloading in a fresh process."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

from app.training.artifacts import read_manifest
from app.training.registry import run_strategy
from tests.tiny_models import COMMON, FILLER, NEGATIVE, POSITIVE, make_classification_rows



def _unrelated() -> list[str]:
    """COMMON words whose index term (stemmed, as BM25 sees it) is no filler word's: "its" searches as "it"."""
    from app.corpora.index import analyzer

    filler = {t for w in FILLER for t in analyzer().analyze(w)}
    return [w for w in COMMON if not set(analyzer().analyze(w)) & filler]


UNRELATED = _unrelated()
N_TRAIN, BATCH = 16, 8  # 2 internal batches per epoch
BASE = {"corpus": "corpus-test", "preset": "tiny", "top_k": 3, "rho1": 2, "rho2": 20, "stage2_epochs": 1}


def corpus_rows() -> list[str]:
    """Documents 0-9 hold every positive word, 10-19 every negative one, 20-59 neither and no filler word,
    so a training example (2 label words among filler) matches only its own label's documents."""
    pos = [" ".join(POSITIVE + UNRELATED[i:i + 5]) for i in range(10)]
    neg = [" ".join(NEGATIVE + UNRELATED[i + 10:i + 15]) for i in range(10)]
    other = [" ".join(UNRELATED[(7 * i) % 150:(7 * i) % 150 + 8]) for i in range(40)]
    return pos + neg + other


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory):
    from app.corpora.index import build_index

    root = tmp_path_factory.mktemp("tlm-corpus")
    (root / "corpus.txt").write_text("\n".join(corpus_rows()) + "\n")
    build_index(root / "corpus.txt", root / "index")
    return root / "index"


@pytest.fixture
def tlm_ctx(make_ctx, index_dir):
    def make(settings: dict | None = None, **kwargs):
        ctx = make_ctx("tlm", {**BASE, **(settings or {})}, n_train=N_TRAIN, **kwargs)
        ctx.corpora["corpus"] = index_dir
        return ctx
    return make


def retrieved(ctx) -> list[dict]:
    return [json.loads(line) for line in open(ctx.output_dir / "retrieved.jsonl")]


def test_bm25_retrieves_each_examples_own_documents(tlm_ctx):
    ctx = tlm_ctx(n_epochs=1)
    result = run_strategy(ctx)
    assert result.status == "succeeded"
    rows = retrieved(ctx)
    examples = make_classification_rows(N_TRAIN, seed=1)
    assert [r["example"] for r in rows] == list(range(N_TRAIN))
    for row, example in zip(rows, examples, strict=True):
        wanted = range(0, 10) if example["label"] == "pos" else range(10, 20)
        assert len(row["documents"]) == 3 and set(row["documents"]) <= set(wanted), (row, example)
        assert row["scores"] == sorted(row["scores"], reverse=True) and row["scores"][-1] > 0
    s = read_manifest(ctx.output_dir)["tlm"]["retrieval"]
    union = {d for r in rows for d in r["documents"]}
    assert s["documents"] == len(union) and s["bm25_documents"] == len(union) and s["corpus_documents"] == 60
    texts = corpus_rows()
    tokenizer_tokens = sum(len(t.split()) + 2 for t in (texts[d] for d in union))  # word-level vocabulary
    assert s["external_tokens"] == tokenizer_tokens
    assert any(f"{len(union)} documents, {tokenizer_tokens} tokens" in text for kind, text in ctx.sink.events
               if kind == "message")


def test_interleaving_is_rho1_external_batches_per_internal_one(tlm_ctx, index_dir):
    from app.training.tasks import get_task
    from app.training.data import load_classification_examples
    from app.training.engine import epoch_batches
    from app.training.masking import MlmCollator
    from app.training.strategies.tlm.config import TlmSettings
    from app.training.strategies.tlm.external import ExternalTexts, write_external
    from app.training.strategies.tlm.strategy import _interleaved_batches
    from transformers import AutoTokenizer

    ctx = tlm_ctx({"rho1": 3})
    settings, hp = ctx.settings_as(TlmSettings), ctx.hyperparameters
    tokenizer = AutoTokenizer.from_pretrained(ctx.base_model.path)
    examples = load_classification_examples(ctx.train_file)
    train = get_task("sequence_classification").encode(tokenizer, examples, ["neg", "pos"], hp.max_length)
    store = ctx.checkpoint_dir / "s"
    store.mkdir(parents=True)
    write_external(store, corpus_rows()[:5])  # 5 documents: a batch of 8 wraps into the next shuffled pass
    external = ExternalTexts(store, seed=3)
    batch = _interleaved_batches(settings, hp, train, external, MlmCollator(tokenizer, settings.mlm, None,
                                 max_length=16, generator=torch.Generator()), n_internal=2, device=torch.device("cpu"))
    kinds = ["internal" if "labels" in batch(0, b) else "external" for b in range(2 * 4)]
    assert kinds == ["external"] * 3 + ["internal"] + ["external"] * 3 + ["internal"]
    first = batch(0, 0)
    assert set(first) >= {"input_ids", "attention_mask", "mlm_labels"} and "labels" not in first
    inner = batch(0, 3)
    assert inner["labels"].shape == (8,) and inner["mlm_labels"].shape == inner["input_ids"].shape
    clean = train.batch(epoch_batches(len(train), hp)(0, 0), torch.device("cpu"))["input_ids"]
    masked = inner["mlm_labels"] != -100  # the task reads the masked input, as in the authors' model
    assert torch.equal(inner["input_ids"][~masked], clean[~masked]) and (inner["input_ids"] != clean).any()
    assert (inner["mlm_labels"] != -100).any() and torch.equal(batch(0, 3)["mlm_labels"], inner["mlm_labels"])
    # external batches 0 and 1 read items 0-7 and 8-15 of the endless passes: each pass is all 5 documents
    seen = [external.batch_texts(g, 8) for g in range(3)]
    flat = [t for texts in seen for t in texts][:15]
    for p in range(3):
        assert sorted(flat[5 * p:5 * p + 5]) == sorted(corpus_rows()[:5])
    assert seen == [external.batch_texts(g, 8) for g in range(3)]  # the same batch for the same number


def test_stage1_counts_steps_flops_and_stage2_follows(tlm_ctx):
    ctx = tlm_ctx({"rho1": 2, "stage2_epochs": 2}, n_epochs=2)
    result = run_strategy(ctx)
    stages = read_manifest(ctx.output_dir)["tlm"]["stages"]
    one, two = stages
    assert (one["stage"], one["steps"], one["internal_batches"], one["external_batches"]) == ("stage1", 12, 4, 8)
    assert (two["stage"], two["steps"], two["epochs"]) == ("stage2", 4, 2)
    assert result.steps == 16 and result.flops == pytest.approx(one["flops"] + two["flops"])
    assert result.trained_tokens == one["trained_tokens"] + two["trained_tokens"]
    assert result.metrics["stage1_flops"] == one["flops"] and result.metrics["stage2_flops"] == two["flops"]
    # stage 1's model (classifier + MLM head transform) costs more per token than stage 2's classifier alone
    assert one["flops"] / one["trained_tokens"] > two["flops"] / two["trained_tokens"]
    assert ctx.sink.of("checkpoint") == [6, 12, 14, 16]  # stage 2's steps continue after stage 1's
    final = [text for kind, text in ctx.sink.events if kind == "message" and text.startswith("TLM finished")]
    assert len(final) == 1 and "validation accuracy" in final[0] and f"{result.flops:.3e} training FLOPs" in final[0]


def test_without_stage2_the_artifact_is_stage1s_model(tlm_ctx):
    ctx = tlm_ctx({"stage2": False, "rho1": 1})
    result = run_strategy(ctx)
    assert result.status == "succeeded" and result.steps == 4
    assert [s["stage"] for s in read_manifest(ctx.output_dir)["tlm"]["stages"]] == ["stage1"]


def test_loss_is_rho2_weighted_mlm_plus_task_and_external_is_mlm_alone():
    from transformers import BertConfig

    from app.training.strategies.tlm.model import TlmModel, build_models

    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, num_labels=2)
    classifier, mlm = build_models(config, seed=0)
    model = TlmModel(classifier, mlm, rho2=20.0).eval()
    ids = torch.randint(5, 50, (4, 10))
    mlm_labels = torch.full_like(ids, -100)
    mlm_labels[:, 2] = ids[:, 2]
    masked = ids.clone()
    masked[:, 2] = 4
    mask = torch.ones_like(ids)
    labels = torch.tensor([0, 1, 0, 1])
    with torch.no_grad():  # the authors' model: one encoder pass over the masked input serves both losses
        task = classifier(input_ids=masked, attention_mask=mask, labels=labels).loss
        mlm_loss = mlm(labels=mlm_labels, input_ids=masked, attention_mask=mask).loss
        joint = model(input_ids=masked, attention_mask=mask, labels=labels, mlm_labels=mlm_labels).loss
        external = model(input_ids=masked, attention_mask=mask, mlm_labels=mlm_labels).loss
        model.rho2 = 0.0
        alone = model(input_ids=masked, attention_mask=mask, labels=labels, mlm_labels=mlm_labels).loss
    assert joint.item() == pytest.approx((20 * mlm_loss.item() + task.item()) / 21, rel=1e-6)
    assert external.item() == pytest.approx(mlm_loss.item(), rel=1e-6) and alone.item() == pytest.approx(task.item())
    assert mlm.model.get_output_embeddings().weight is classifier.get_input_embeddings().weight  # one encoder


def test_random_retrieval_draws_as_many_documents_as_bm25(tlm_ctx):
    ctx = tlm_ctx({"retrieval": "random", "top_k": 2})
    assert run_strategy(ctx).status == "succeeded"
    rows = retrieved(ctx)
    assert all(r["random"] for r in rows)
    drawn = [d for r in rows for d in r["documents"]]
    s = read_manifest(ctx.output_dir)["tlm"]["retrieval"]
    assert len(drawn) == len(set(drawn)) == s["documents"] == s["bm25_documents"]
    assert set(drawn) - set(range(20))  # random documents include unrelated ones (BM25's never do)


def test_max_external_docs_caps_s_and_rho1_zero_skips_retrieval(tlm_ctx):
    ctx = tlm_ctx({"max_external_docs": 4, "stage2": False}, output="capped")
    run_strategy(ctx)
    assert read_manifest(ctx.output_dir)["tlm"]["retrieval"]["documents"] == 4
    ctx = tlm_ctx({"rho1": 0, "stage2": False}, output="none")
    result = run_strategy(ctx)
    assert result.status == "succeeded" and result.steps == 2
    assert read_manifest(ctx.output_dir)["tlm"]["retrieval"]["documents"] == 0
    assert (ctx.output_dir / "retrieved.jsonl").read_text() == ""


def test_a_paused_job_resumes_to_the_uninterrupted_weights(tlm_ctx):
    from safetensors.torch import load_file

    from tests.training.conftest import ListSink

    whole = tlm_ctx(output="whole")
    run_strategy(whole)
    for stop in (3, 7):  # inside stage 1 (6 steps), then inside stage 2
        ctx = tlm_ctx(output=f"paused{stop}", sink=ListSink(stop_at_step=stop, stop_reason="pause"))
        assert run_strategy(ctx).status == "paused"
        resumed = dataclasses.replace(ctx, sink=ListSink())
        result = run_strategy(resumed)
        assert result.status == "succeeded" and result.steps == 8
        a, b = (load_file(c.output_dir / "model" / "model.safetensors") for c in (whole, resumed))
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), stop


RELOAD = """
import json, sys, torch
from pathlib import Path
from transformers import AutoModelForSequenceClassification, AutoTokenizer
art, valid = Path(sys.argv[1]), sys.argv[2]
model = AutoModelForSequenceClassification.from_pretrained(art / "model").eval()
tok = AutoTokenizer.from_pretrained(art / "model")
preds = [json.loads(line) for line in open(art / "eval" / "predictions.jsonl")]
worst = 0.0
for row, pred in zip([json.loads(l) for l in open(valid)], preds, strict=True):
    with torch.no_grad():
        logits = model(**tok(row["text"], return_tensors="pt", truncation=True, max_length=16)).logits[0]
    worst = max(worst, (logits - torch.tensor(pred["logits"])).abs().max().item())
    assert model.config.id2label[int(logits.argmax())] == pred["predicted"]
print(json.dumps({"worst": worst, "vocab": len(tok), "app": "app.training" in sys.modules}))
"""


@pytest.mark.parametrize("tokenizer", ["base", "train"])
def test_artifact_reloads_in_a_fresh_process_and_predicts(tlm_ctx, tokenizer):
    """With pooling cls (the authors' head) the artifact is a plain transformers model."""
    ctx = tlm_ctx({"tokenizer": tokenizer, "vocab_size": 120, "pooling": "cls"})
    assert run_strategy(ctx).status == "succeeded"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", RELOAD, str(ctx.output_dir), str(ctx.validation_file)],
                         capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    checked = json.loads(out.stdout.strip().splitlines()[-1])
    assert checked["worst"] < 1e-5 and not checked["app"]
    base_vocab = len((ctx.base_model.path / "vocab.txt").read_text().split())
    assert (checked["vocab"] == base_vocab) == (tokenizer == "base")
    manifest = read_manifest(ctx.output_dir)
    assert {"model/model.safetensors", "model/tokenizer.json", "retrieved.jsonl"} <= set(manifest["files"])
    assert manifest["method"] == "tlm" and manifest["settings"]["tokenizer"] == tokenizer


RELOAD_MEAN = """
import json, sys
from pathlib import Path
from app.training.artifacts import load_classifier, predict
art, valid = Path(sys.argv[1]), sys.argv[2]
model, tok, labels = load_classifier(art)
rows = [json.loads(line) for line in open(valid)]
got = predict(model, tok, rows, labels)
preds = [json.loads(line) for line in open(art / "eval" / "predictions.jsonl")]
print(json.dumps({"worst": max(max(abs(a - b) for a, b in zip(g["logits"], p["logits"], strict=True))
                               for g, p in zip(got, preds, strict=True)),
                  "same": [g["predicted"] for g in got] == [p["predicted"] for p in preds],
                  "pooler": type(model.base_model.pooler).__name__}))
"""


def test_auto_pooling_reads_the_mean_and_the_artifact_reloads_with_it(tlm_ctx):
    """pooling "auto" resolves to mean (a from-scratch [CLS] is untrained for hundreds of steps): the event and
    the manifest say so, a resumed stage 2 reads the mean too, and load_classifier in a fresh process rebuilds
    the mean pooler and reproduces the job's own predictions."""
    ctx = tlm_ctx()
    assert run_strategy(ctx).status == "succeeded"
    assert read_manifest(ctx.output_dir)["settings"]["pooling"] == "mean"
    assert any("the mean of the last hidden states (pooling 'mean')" in text
               for kind, text in ctx.sink.events if kind == "message")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", RELOAD_MEAN, str(ctx.output_dir), str(ctx.validation_file)],
                         capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    checked = json.loads(out.stdout.strip().splitlines()[-1])
    assert checked == {**checked, "same": True, "pooler": "MeanPooler"} and checked["worst"] < 1e-5


def test_mean_and_cls_pooling_train_different_heads(tlm_ctx):
    """The setting reaches the model: the same seed and data give other logits over the mean than over [CLS]."""
    logits = {}
    for pooling in ("mean", "cls"):
        ctx = tlm_ctx({"pooling": pooling}, output=pooling)
        assert run_strategy(ctx).status == "succeeded"
        logits[pooling] = [json.loads(line)["logits"] for line in open(ctx.output_dir / "eval" / "predictions.jsonl")]
    assert logits["mean"] != logits["cls"]


def test_a_job_without_its_corpus_index_fails_saying_so(tlm_ctx):
    from app.training.base import TrainingError

    ctx = tlm_ctx()
    ctx.corpora.clear()
    with pytest.raises(TrainingError, match="corpus-test") as caught:
        run_strategy(ctx)
    assert caught.value.param == "method.tlm.corpus"

"""The `cloze` strategy (PET, Schick & Schütze 2021) on tiny random BERTs: the masked-LM head learns the
verbalizer, patterns ensemble, multi-token words average, a base without an MLM head gets one initialised,
adaptive → cloze reads the adapted head, cloze.peft artifacts are small, and every artifact reproduces the
job's predictions in a fresh process."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from app.fsio import directory_sha256
from app.training.artifacts import load_classifier, predict, read_manifest
from app.training.base import BaseModelRef, TrainingError
from app.training.registry import run_strategy
from tests.tiny_models import make_classification_rows
from tests.training.conftest import ListSink, context_factory

VERBALIZER = {"pos": "good", "neg": "bad"}
PATTERNS = ["{text} It was [MASK].", "[MASK] : {text}"]
VARIANTS = {"whole": None, "lora": {"type": "lora", "r": 4}, "bitfit": {"type": "bitfit"}}


@pytest.fixture(scope="module")
def bare_base(tiny_model_dir, tmp_path_factory) -> BaseModelRef:
    """The tiny BERT saved as a bare encoder, without MLM head: as all-MiniLM-L6-v2 (minilm-l6) ships."""
    from transformers import AutoTokenizer, BertModel

    path = tmp_path_factory.mktemp("bare-bert")
    BertModel.from_pretrained(tiny_model_dir).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(path)
    return BaseModelRef(id="bare-bert", path=path, sha256=directory_sha256(path))


@pytest.fixture(scope="module")
def trained(bare_base, tmp_path_factory) -> dict:
    """Each cloze.peft variant trained once on the bare encoder with two patterns."""
    make = context_factory(bare_base, tmp_path_factory.mktemp("cloze"))
    runs = {}
    for name, peft in VARIANTS.items():
        settings = {"verbalizer": VERBALIZER, "patterns": PATTERNS, **({"peft": peft} if peft else {})}
        ctx = make("cloze", settings, output=name, n_epochs=2, learning_rate=1e-2)
        assert run_strategy(ctx).status == "succeeded", name
        runs[name] = ctx
    return runs


def test_the_loss_falls_as_the_mlm_head_learns_the_verbalizer(make_ctx):
    ctx = make_ctx("cloze", {"verbalizer": VERBALIZER}, n_train=32, n_epochs=15, learning_rate=3e-3, batch_size=8)
    result = run_strategy(ctx)
    losses = [m["train_loss"] for m in ctx.sink.of("metrics") if "train_loss" in m]
    assert result.status == "succeeded" and losses[-1] < 0.2 * losses[0], losses
    assert result.metrics["eval_accuracy"] == 1.0
    assert not any("no trained MLM head" in m for m in ctx.sink.of("message"))  # the tiny BERT has one


def test_a_base_without_mlm_head_gets_one_initialised_and_says_so(trained):
    messages = trained["whole"].sink.of("message")
    assert any("bare-bert has no trained MLM head" in m and "initialised and learned" in m for m in messages)


RELOAD = """
import json, sys
from pathlib import Path
from app.training.artifacts import load_classifier, predict
base, worst = Path(sys.argv[1]), 0.0
for art, valid in zip(map(Path, sys.argv[2::2]), sys.argv[3::2]):
    model, tokenizer, labels = load_classifier(art, base)
    rows = [json.loads(line) for line in open(valid)]
    want = [json.loads(line) for line in open(art / "eval" / "predictions.jsonl")]
    for got, job in zip(predict(model, tokenizer, rows, labels), want, strict=True):
        assert got["predicted"] == job["predicted"], (art, got, job)
        worst = max(worst, *(abs(a - b) for a, b in zip(got["logits"], job["logits"])))
print(worst)
"""


def test_every_variant_reproduces_the_jobs_predictions_in_a_fresh_process(trained, bare_base):
    args = [str(bare_base.path)]
    for ctx in trained.values():
        args += [str(ctx.output_dir), str(ctx.validation_file)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", RELOAD, *args], capture_output=True, text=True, env=env, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    assert float(out.stdout.strip().splitlines()[-1]) < 1e-5


def test_peft_artifacts_hold_only_what_trained(trained, bare_base):
    base_bytes = (bare_base.path / "model.safetensors").stat().st_size
    files = {name: set(read_manifest(ctx.output_dir)["files"]) for name, ctx in trained.items()}
    assert {"mlm/model.safetensors", "cloze/cloze.json"} <= files["whole"]
    adapter = load_file(trained["lora"].output_dir / "adapter" / "adapter_model.safetensors")
    assert all("lora_" in k or ".transform." in k for k in adapter), sorted(adapter)
    assert any(".transform.dense." in k for k in adapter)  # the head transform the base lacked ships
    assert not any("decoder" in k or "embeddings" in k for k in adapter)
    delta = load_file(trained["bitfit"].output_dir / "delta" / "delta.safetensors")
    assert all(k.endswith(".bias") or ".transform." in k for k in delta), sorted(delta)
    assert {"cls.predictions.transform.dense.weight", "cls.predictions.bias"} <= set(delta)
    for name, path in (("lora", "adapter/adapter_model.safetensors"), ("bitfit", "delta/delta.safetensors")):
        assert (trained[name].output_dir / path).stat().st_size < 0.2 * base_bytes, name  # transform 32², vocab bias
    config = json.loads((trained["lora"].output_dir / "cloze" / "cloze.json").read_text())
    assert config["patterns"] == PATTERNS and config["verbalizer"] == VERBALIZER and config["peft"] == "lora"
    assert config["labels"] == ["neg", "pos"] and config["base_model"]["sha256"] == bare_base.sha256


def _pattern_logits(model, tokenizer, pattern: str, texts: list[str]) -> torch.Tensor:
    from app.training.strategies.cloze.apply import ClozeTokenizer
    from app.training.strategies.cloze.encoding import ClozeEncoder

    one = ClozeTokenizer(ClozeEncoder(tokenizer.encoder.tokenizer, [pattern]), uses_pairs=False)
    with torch.no_grad():
        return model(**one(texts, padding=True)).logits


def test_patterns_are_ensembled_by_averaging_label_log_probabilities(trained, bare_base):
    ctx = trained["whole"]
    model, tokenizer, labels = load_classifier(ctx.output_dir, bare_base.path)
    texts = [r["text"] for r in make_classification_rows(5, seed=9)]
    with torch.no_grad():
        both = model(**tokenizer(texts, padding=True)).logits
    each = [_pattern_logits(model, tokenizer, p, texts) for p in PATTERNS]
    assert all(torch.allclose(e.exp().sum(-1), torch.ones(len(texts))) for e in each)  # label log-probs
    assert torch.allclose(both, (each[0] + each[1]) / 2, atol=1e-6)
    assert not torch.allclose(each[0], each[1], atol=1e-3)  # two patterns, two opinions


def test_a_multi_token_word_scores_the_mean_of_its_tokens_log_probabilities(make_ctx, base_ref):
    from transformers import AutoModelForMaskedLM

    verbalizer = {"pos": "very good", "neg": "bad"}
    ctx = make_ctx("cloze", {"verbalizer": verbalizer}, n_epochs=1)
    assert run_strategy(ctx).status == "succeeded"
    assert any("several tokens" in m and "very good" in m for m in ctx.sink.of("message"))
    model, tokenizer, _ = load_classifier(ctx.output_dir, base_ref.path)
    enc = tokenizer(["a good day"], padding=True)
    with torch.no_grad():
        logits = model(**enc).logits[0]
    mlm = AutoModelForMaskedLM.from_pretrained(ctx.output_dir / "mlm").eval()
    ids = tokenizer.encoder.tokenizer.convert_tokens_to_ids(["bad", "very", "good"])
    with torch.no_grad():
        vocab = mlm(input_ids=enc["input_ids"][:, 0]).logits[0, int(enc["mask_positions"][0, 0])].log_softmax(-1)
    scores = torch.stack([vocab[ids[0]], (vocab[ids[1]] + vocab[ids[2]]) / 2])  # labels ["neg", "pos"]
    assert torch.allclose(logits, scores.log_softmax(-1), atol=1e-5)


def test_adaptive_then_cloze_reads_the_adapted_mlm_head(bare_base, tmp_path):
    make = context_factory(bare_base, tmp_path)
    then = {"type": "cloze", "cloze": {"verbalizer": VERBALIZER, "peft": {"type": "lora", "r": 4}, "hyperparameters": {
        "n_epochs": 2, "batch_size": 8, "learning_rate": 1e-2, "max_length": 16}}}
    ctx = make("adaptive", {"tapt": True, "then": then}, n_train=24, batch_size=8, learning_rate=5e-3, n_epochs=1)
    result = run_strategy(ctx)
    assert result.status == "succeeded" and "eval_accuracy" in result.metrics
    messages = ctx.sink.of("message")
    assert any("lacks" in m and "MLM-head weights" in m for m in messages)  # TAPT initialised the head …
    assert not any("no trained MLM head" in m for m in messages)  # … which cloze then found trained
    manifest = read_manifest(ctx.output_dir)
    assert manifest["method"] == "adaptive" and manifest["task_method"] == "cloze"
    adapter = load_file(ctx.output_dir / "adapter" / "adapter_model.safetensors")
    assert adapter and all("lora_" in k for k in adapter)  # the adapted head is the base's: it does not ship
    model, tokenizer, labels = load_classifier(ctx.output_dir, ctx.output_dir / "encoder")
    rows = [json.loads(line) for line in open(ctx.validation_file)]
    want = [json.loads(line) for line in open(ctx.output_dir / "eval" / "predictions.jsonl")]
    for got, job in zip(predict(model, tokenizer, rows, labels), want, strict=True):
        assert got["predicted"] == job["predicted"]
        assert max(abs(a - b) for a, b in zip(got["logits"], job["logits"])) < 1e-5


@pytest.mark.parametrize("settings, param, fragment", [
    ({"verbalizer": {"pos": "good"}}, "verbalizer", "['neg']"),
    ({"verbalizer": {"pos": "good", "neg": "xylophone"}}, "verbalizer", "'xylophone' of label 'neg' is not in"),
    ({"verbalizer": {"pos": "Good", "neg": "good"}}, "verbalizer", "spells alike"),
    ({"verbalizer": VERBALIZER, "patterns": ["{text} it was really very quite a lot like the [MASK] ."]},
     "hyperparameters.max_length", "leaves no room for the text"),
    ({"verbalizer": VERBALIZER, "patterns": ["{text} [MASK] {text_pair}"]}, "patterns", "no \"text_pair\""),
    ({"verbalizer": VERBALIZER, "peft": {"type": "lora", "target_modules": ["nope"]}}, "peft.target_modules", "nope"),
])
def test_bad_settings_fail_the_job_naming_the_field(make_ctx, settings, param, fragment):
    with pytest.raises(TrainingError) as info:
        run_strategy(make_ctx("cloze", settings, max_length=12))
    assert info.value.param == f"method.cloze.{param}" and fragment in info.value.message, info.value.message


def test_texts_are_truncated_around_the_pattern_and_its_single_mask(base_ref):
    from transformers import AutoTokenizer

    from app.training.strategies.cloze.encoding import ClozeEncoder

    tokenizer = AutoTokenizer.from_pretrained(base_ref.path)
    encoder = ClozeEncoder(tokenizer, ["{text} [MASK] , {text_pair} !"])
    long, short = " ".join(["good"] * 40), "bad [MASK] day"
    [row] = encoder.encode([long], [short], max_length=12)
    [sequence] = row["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(sequence)
    assert len(sequence) == 12 and tokens.count("[MASK]") == 1  # the typed [MASK] reads as unknown
    assert tokens == ["[CLS]", "good", "good", "good", "good", "[MASK]", ",", "bad", "[UNK]", "day", "!", "[SEP]"]
    assert row["mask_positions"] == [5]


def test_the_predictions_engine_serves_a_cloze_artifact(trained, bare_base):
    from app.predictions.batcher import Work
    from app.predictions.engines import Engines
    from app.predictions.served import describe

    ctx = trained["bitfit"]
    texts = [r["text"] for r in make_classification_rows(4, seed=4)] + [""]
    model, tokenizer, labels = load_classifier(ctx.output_dir, bare_base.path)
    want = [row["logits"] for row in predict(model, tokenizer, texts, labels)]
    work = Work(describe("cloze", ctx.output_dir, bare_base), [(t, None) for t in texts])
    Engines(4, 2, 64).run([work])
    got = work.future.result(timeout=0)
    assert max(abs(a - b) for g, w in zip(got, want, strict=True) for a, b in zip(g, w)) < 1e-5


def test_merged_export_is_refused_with_the_reason(trained):
    from app.training.export import export_refusal

    for ctx in trained.values():
        assert "masked-LM head" in export_refusal(ctx.output_dir)


def test_pause_then_resume_of_a_lora_cloze_job_matches(make_ctx):
    settings = {"verbalizer": VERBALIZER, "patterns": PATTERNS, "peft": {"type": "lora", "r": 4}}
    straight = make_ctx("cloze", settings, output="straight", n_train=24, n_epochs=2)
    assert run_strategy(straight).status == "succeeded"
    paused = make_ctx("cloze", settings, output="resumed", n_train=24, n_epochs=2,
                      sink=ListSink(stop_at_step=4, stop_reason="pause"))
    assert run_strategy(paused).status == "paused"
    from app.training.checkpoints import latest_complete_checkpoint

    resumed = make_ctx("cloze", settings, output="resumed", n_train=24, n_epochs=2,
                       resume_from=latest_complete_checkpoint(paused.checkpoint_dir))
    assert run_strategy(resumed).status == "succeeded"
    a = load_file(straight.output_dir / "adapter" / "adapter_model.safetensors")
    b = load_file(resumed.output_dir / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def test_pair_files_fill_text_pair(make_ctx, base_ref):
    ctx = make_ctx("cloze", {"verbalizer": VERBALIZER, "patterns": ["{text} ? [MASK] , {text_pair}"]}, pair=True)
    assert run_strategy(ctx).status == "succeeded"
    model, tokenizer, labels = load_classifier(ctx.output_dir, base_ref.path)
    with pytest.raises(ValueError, match="text_pair"):
        tokenizer(["good day"])
    rows = [json.loads(line) for line in open(ctx.validation_file)]
    want = [json.loads(line)["predicted"] for line in open(ctx.output_dir / "eval" / "predictions.jsonl")]
    assert [p["predicted"] for p in predict(model, tokenizer, rows, labels)] == want


"""`pooling: "mean"`: the head reads the attention-masked mean of the last hidden states
(Reimers & Gurevych 2019) instead of BERT's [CLS] pooler, in training and wherever the artifact loads."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from app.training.artifacts import load_classifier, predict
from app.training.pooling import MeanPooler, use_mean_pooling
from app.training.registry import run_strategy


def _classifier(base_dir):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(base_dir, num_labels=2).eval()


def test_the_head_reads_the_masked_mean_whatever_the_padding(tiny_model_dir):
    from transformers import AutoTokenizer

    model, tokenizer = use_mean_pooling(_classifier(tiny_model_dir)), AutoTokenizer.from_pretrained(tiny_model_dir)
    assert isinstance(model.bert.pooler, MeanPooler) and not list(model.bert.pooler.parameters())
    alone = tokenizer(["short"], return_tensors="pt")
    padded = tokenizer(["short", "a much longer text with many more words in it"], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model.bert(**alone).last_hidden_state
        features = model.bert(**alone).pooler_output
        assert torch.allclose(features, hidden.mean(dim=1), atol=1e-6)
        assert torch.allclose(model(**alone).logits[0], model(**padded).logits[0], atol=1e-5)
        plain = _classifier(tiny_model_dir)
        assert not torch.allclose(plain(**alone).logits, model(**alone).logits)


@pytest.mark.parametrize(("method", "settings"), [("bitfit", {}), ("lora", {"r": 4}), ("supervised", {})])
def test_artifacts_load_with_the_mean_head(make_ctx, tiny_model_dir, method, settings):
    ctx = make_ctx(method, {**settings, "pooling": "mean"}, n_train=16, n_epochs=2, learning_rate=3e-3)
    result = run_strategy(ctx)
    assert any("pooling 'mean'" in m for m in ctx.sink.of("message"))
    model, tokenizer, labels = load_classifier(ctx.output_dir, tiny_model_dir)
    assert isinstance(model.bert.pooler, MeanPooler)
    rows = [{"text": "good film, liked it"}, {"text": "bad"}]
    predicted = predict(model, tokenizer, rows, labels)
    assert [p["predicted"] for p in predicted] == [p["predicted"] for p in predict(model, tokenizer, rows[:1] * 2 + rows[1:], labels)][1:]
    assert result.metrics.get("eval_accuracy") is not None
    assert "load_classifier" in (ctx.output_dir / "README.md").read_text()  # plain transformers would read [CLS]


def test_a_model_without_a_pooler_is_refused(tiny_model_dir):
    from app.training.errors import TrainingError

    model = _classifier(tiny_model_dir)
    model.bert.pooler = None
    with pytest.raises(TrainingError, match="pooling 'cls'"):
        use_mean_pooling(model)


def test_settings_that_cannot_pool_are_refused():
    from app.training.base_facts import BaseFacts
    from app.training.methods import MethodError, parse_method

    with pytest.raises(MethodError, match="pools nothing"):
        parse_method({"type": "cloze", "cloze": {"pooling": "mean"}})
    settings = parse_method({"type": "lora", "lora": {"pooling": "mean"}}).settings
    roberta = BaseFacts(name="rob", model_type="roberta", depth=2, hidden_size=8, max_position_embeddings=64,
                        pad_token_id=1, tokenizer_max_length=64, tensors=None)
    assert [field for field, _ in settings.check_base(roberta)] == ["pooling"]
    assert settings.check_base(dataclasses.replace(roberta, model_type="bert")) == []
    from app.training.data import DatasetSummary

    tags = DatasetSummary(n_examples=4, labels=["B-PER", "O"], has_pair=False, n_chars=40, task="token_classification")
    [(field, message)] = settings.check_data(tags)
    assert field == "pooling" and "pools nothing" in message
    assert parse_method({"type": "lora", "lora": {}}).settings.check_data(tags) == []




def _sentence_base(tmp_path, tiny_model_dir, modes: dict) -> Path:
    import json
    import shutil

    base = tmp_path / "sentence-base"
    shutil.copytree(tiny_model_dir, base)
    (base / "1_Pooling").mkdir()
    (base / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **modes}))
    return base


@pytest.mark.parametrize(("modes", "declared"), [
    ({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}, "mean"),
    ({"pooling_mode_cls_token": True}, "cls"),
    ({"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True}, None),  # a mix a head cannot read
    ({}, None),
])
def test_the_declared_pooling_is_read_from_the_sentence_transformers_config(tmp_path, tiny_model_dir, modes, declared):
    from app.training.pooling import declared_pooling

    assert declared_pooling(_sentence_base(tmp_path, tiny_model_dir, modes)) == declared
    assert declared_pooling(tiny_model_dir) is None


def test_auto_pools_as_the_base_was_trained_where_the_rule_prefers_it(tmp_path, tiny_model_dir):
    from transformers import AutoModelForTokenClassification

    from app.training.auto_rule import AutoRule
    from app.training.pooling import resolve_pooling

    sentence = _sentence_base(tmp_path, tiny_model_dir, {"pooling_mode_mean_tokens": True})
    prefers, plain = AutoRule(learning_rate=1e-3, pooling="sentence"), AutoRule(learning_rate=1e-3)
    model = _classifier(tiny_model_dir)
    assert resolve_pooling("auto", prefers, model, sentence)[0] == "mean"
    assert resolve_pooling("auto", plain, model, sentence)[0] == "cls"
    assert resolve_pooling("auto", prefers, model, tiny_model_dir) == ("cls", "auto: the base declares no mean pooling")
    tagger = AutoModelForTokenClassification.from_pretrained(tiny_model_dir, num_labels=3)
    assert resolve_pooling("auto", prefers, tagger, sentence) == ("cls", "auto: this head reads no pooler")
    assert resolve_pooling("cls", prefers, model, sentence)[0] == "cls"


@pytest.mark.parametrize("method", ["prompt_tuning"])  # the methods whose rule prefers the base's sentence pooling
def test_a_job_on_auto_pools_as_the_sentence_base_was_trained(tmp_path, tiny_model_dir, method):
    from app.fsio import directory_sha256
    from app.training.artifacts import read_manifest
    from app.training.base import BaseModelRef
    from app.training.registry import get_strategy
    from tests.training.conftest import context_factory

    assert get_strategy(method).auto.pooling == "sentence"
    sentence = _sentence_base(tmp_path, tiny_model_dir, {"pooling_mode_mean_tokens": True})
    make = context_factory(BaseModelRef(id="tiny-sentence", path=sentence, sha256=directory_sha256(sentence)),
                           tmp_path)
    ctx = make(method, {}, n_train=16, learning_rate=3e-3)
    run_strategy(ctx)
    assert read_manifest(ctx.output_dir)["settings"]["pooling"] == "mean"
    assert any("auto: the base was trained as a sentence encoder" in m for m in ctx.sink.of("message"))
    model, _, _ = load_classifier(ctx.output_dir, sentence)
    assert any(isinstance(module, MeanPooler) for module in model.modules())
    plain = make(method, {}, n_train=16, learning_rate=3e-3, output="plain-base")  # same method, no declaration
    plain.base_model = BaseModelRef(id="tiny-bert", path=tiny_model_dir, sha256=directory_sha256(tiny_model_dir))
    run_strategy(plain)
    assert "pooling" not in read_manifest(plain.output_dir)["settings"]

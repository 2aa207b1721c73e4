"""Prompt tuning (Lester et al. 2021) on the tiny BERT: only the prompt and the head train and ship, the
artifact grows by one embedding per virtual token, the text initialisation starts from the words'
embeddings, positions are checked, and other bases are refused."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from app.training.artifacts import load_classifier, predict
from app.training.base import TrainingError
from app.training.methods import MethodError, parse_method
from app.training.registry import run_strategy

HIDDEN, HEAD = 32, 2 * 32 + 2  # tests/tiny_models.make_tiny_bert; the 2-label head's weight + bias
WEIGHTS = "adapter/adapter_model.safetensors"


def trained_tensors(ctx) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(the artifact's tensors, the last checkpoint's trainable tensors) of a finished job."""
    checkpoint = sorted(ctx.checkpoint_dir.glob("step-*"))[-1] / "trainable.safetensors"
    return load_file(ctx.output_dir / WEIGHTS), load_file(checkpoint)


def reload_matches_job(ctx, base_dir) -> list[dict]:
    """The artifact, applied over `base_dir` in this process, reproduces the job's validation logits."""
    model, tokenizer, labels = load_classifier(ctx.output_dir, base_dir)
    rows = [json.loads(line) for line in open(ctx.validation_file)]
    again = predict(model, tokenizer, rows, labels)
    job = [json.loads(line) for line in open(ctx.output_dir / "eval" / "predictions.jsonl")]
    assert max(abs(a - b) for x, y in zip(again, job, strict=True) for a, b in zip(x["logits"], y["logits"])) < 1e-5
    return again


def assert_ships_only_prompt_and_head(ctx, prompt_shape: tuple[int, int], base_dir) -> dict:
    """Only the virtual tokens and the head had requires_grad, and only they ship: (n, width) prompt rows
    plus the head, a few percent of the base at most. Returns the manifest."""
    tensors, trainable = trained_tensors(ctx)
    assert {k: tuple(v.shape) for k, v in tensors.items()} == {
        "prompt_embeddings": prompt_shape, "base_model.classifier.weight": (2, HIDDEN),
        "base_model.classifier.bias": (2,)}
    assert sorted(trainable) == ["base_model.classifier.modules_to_save.default.bias",
                                 "base_model.classifier.modules_to_save.default.weight",
                                 "prompt_encoder.default.embedding.weight"]
    manifest = json.loads((ctx.output_dir / "manifest.json").read_text())
    assert manifest["parameters"]["trainable"] == prompt_shape[0] * prompt_shape[1] + HEAD
    assert manifest["files"][WEIGHTS]["bytes"] < 0.02 * (base_dir / "model.safetensors").stat().st_size
    return manifest


def test_only_the_prompt_and_head_train_and_ship(make_ctx, tiny_model_dir):
    ctx = make_ctx("prompt_tuning", {"num_virtual_tokens": 5})
    run_strategy(ctx)
    assert_ships_only_prompt_and_head(ctx, (5, HIDDEN), tiny_model_dir)


def test_artifact_grows_by_one_embedding_per_virtual_token(make_ctx):
    sizes = {}
    for n in (4, 36):
        ctx = make_ctx("prompt_tuning", {"num_virtual_tokens": n}, output=f"n{n}")
        run_strategy(ctx)
        sizes[n] = (ctx.output_dir / WEIGHTS).stat().st_size
    # 32 more float32 rows of HIDDEN; safetensors pads its JSON header (where "36" is longer than "4") to 8 bytes
    assert abs(sizes[36] - sizes[4] - 32 * HIDDEN * 4) <= 8


def test_text_init_starts_from_the_words_embeddings_and_reloads(make_ctx, tiny_model_dir):
    from transformers import AutoModel, AutoTokenizer

    text = "good or bad"
    ctx = make_ctx("prompt_tuning", {"num_virtual_tokens": 7, "prompt_tuning_init": "text",
                                     "prompt_tuning_init_text": text}, learning_rate=1e-9)
    run_strategy(ctx)
    ids = AutoTokenizer.from_pretrained(tiny_model_dir)(text)["input_ids"]  # [CLS] good or bad [SEP]
    assert len(ids) == 5
    words = AutoModel.from_pretrained(tiny_model_dir).get_input_embeddings().weight.detach()[(ids * 2)[:7]]
    prompt = load_file(ctx.output_dir / WEIGHTS)["prompt_embeddings"]
    assert torch.allclose(prompt, words, atol=1e-6)  # lr 1e-9: still the initialisation
    config = json.loads((ctx.output_dir / "adapter" / "adapter_config.json").read_text())
    assert config["prompt_tuning_init"] == "TEXT" and config["prompt_tuning_init_text"] == text
    reload_matches_job(ctx, tiny_model_dir)  # inference needs no tokenizer: the prompt is stored


def test_virtual_tokens_must_fit_the_position_embeddings(make_ctx):
    ctx = make_ctx("prompt_tuning", {"num_virtual_tokens": 20}, max_length=120)  # the tiny BERT has 128
    with pytest.raises(TrainingError) as info:
        run_strategy(ctx)
    err = info.value
    assert err.code == "invalid_method_settings" and err.param == "method.prompt_tuning.num_virtual_tokens"
    for fragment in ("num_virtual_tokens 20", "max_length 120", "128 positions", "at most 8", "at most 108"):
        assert fragment in err.message
    assert list(ctx.output_dir.iterdir()) == []
    run_strategy(make_ctx("prompt_tuning", {"num_virtual_tokens": 8}, max_length=120, output="fits"))


def test_applying_over_another_base_is_refused(make_ctx, tiny_model_dir, tmp_path):
    from tests.tiny_models import make_tiny_bert

    ctx = make_ctx("prompt_tuning", {"num_virtual_tokens": 3})
    run_strategy(ctx)
    other = make_tiny_bert(tmp_path / "other-bert", seed=1)  # same shapes, other weights
    with pytest.raises(TrainingError) as info:
        load_classifier(ctx.output_dir, other)
    assert info.value.code == "base_model_mismatch" and "tiny-bert" in info.value.message
    reload_matches_job(ctx, tiny_model_dir)


def tiny_distilbert(path, like):
    """A random DistilBERT (config keys `dim`, `n_heads`) with `like`'s tiny BERT vocabulary, saved at `path`."""
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertForMaskedLM

    tokenizer = AutoTokenizer.from_pretrained(like)
    tokenizer.model_input_names = ["input_ids", "attention_mask"]  # DistilBERT takes no token types
    DistilBertForMaskedLM(DistilBertConfig(vocab_size=len(tokenizer), dim=HIDDEN, n_layers=2, n_heads=2,
                                           hidden_dim=2 * HIDDEN, max_position_embeddings=64)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def on_base(ctx, path, base_id: str):
    """`ctx` training on the base at `path` instead of the tiny BERT."""
    import dataclasses

    from app.fsio import directory_sha256

    ctx.base_model = dataclasses.replace(ctx.base_model, id=base_id, path=path, sha256=directory_sha256(path))
    return ctx


def test_prompt_tuning_works_where_the_prompt_width_is_not_named_hidden_size(make_ctx, tiny_model_dir, tmp_path):
    """DistilBERT's config says `dim` and `n_heads`; the prompt takes the input-embedding width."""
    base = tiny_distilbert(tmp_path / "distil", tiny_model_dir)
    ctx = on_base(make_ctx("prompt_tuning", {"num_virtual_tokens": 4}), base, "tiny-distil")
    assert run_strategy(ctx).status == "succeeded"
    assert load_file(ctx.output_dir / WEIGHTS)["prompt_embeddings"].shape == (4, HIDDEN)
    reload_matches_job(ctx, base)


@pytest.mark.parametrize("settings, field", [
    ({"num_virtual_tokens": 0}, "num_virtual_tokens"),
    ({"num_virtual_tokens": 513}, "num_virtual_tokens"),
    ({"prompt_tuning_init": "text"}, "prompt_tuning_init_text"),
    ({"prompt_tuning_init": "text", "prompt_tuning_init_text": "   "}, "prompt_tuning_init_text"),
    ({"prompt_tuning_init_text": "It was"}, "prompt_tuning_init_text"),
    ({"prompt_tuning_init": "vocab"}, "prompt_tuning_init"),
    ({"aux_mlm_weight": 0.5}, "aux_mlm_weight"),
])
def test_impossible_settings_are_refused_naming_the_field(settings, field):
    with pytest.raises(MethodError) as info:
        parse_method({"type": "prompt_tuning", "prompt_tuning": settings})
    assert info.value.param == f"method.prompt_tuning.{field}"

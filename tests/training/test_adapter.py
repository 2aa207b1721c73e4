"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2020) on the tiny BERT: what trains and
ships, where the adapters sit, the size of the artifact, and which bases are refused."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from app.training.artifacts import load_classifier, predict
from app.training.base import TrainingError
from app.training.methods import MethodError, parse_method
from app.training.registry import run_strategy
from app.training.strategies.adapter.apply import CONFIG, WEIGHTS, apply_adapter
from app.training.strategies.adapter.modules import STACK, insert_adapters

HIDDEN, LAYERS = 32, 2  # tests/tiny_models.make_tiny_bert


def _adapter_params(sites: int, hidden: int, factor: int) -> int:
    """down (h·b + b) + up (b·h + h) per site, b = h // factor."""
    size = hidden // factor
    return sites * (2 * hidden * size + size + hidden)


def _artifact(ctx) -> tuple[dict[str, torch.Tensor], dict]:
    return load_file(ctx.output_dir / WEIGHTS), json.loads((ctx.output_dir / CONFIG).read_text())


def test_pfeiffer_default_trains_only_ffn_adapters_and_head(make_ctx, tiny_model_dir):
    ctx = make_ctx("adapter", n_epochs=2)
    run_strategy(ctx)
    tensors, config = _artifact(ctx)
    adapters = {f"bert.encoder.layer.{i}.output.{STACK}.task.{proj}.{kind}"
                for i in range(LAYERS) for proj in ("down", "up") for kind in ("weight", "bias")}
    assert set(tensors) == adapters | {"classifier.weight", "classifier.bias"}
    assert tensors["bert.encoder.layer.0.output.adapters.task.down.weight"].shape == (HIDDEN // 16, HIDDEN)
    checkpoint = load_file(sorted(ctx.checkpoint_dir.glob("step-*"))[-1] / "trainable.safetensors")
    assert set(checkpoint) == set(tensors)  # nothing else had requires_grad
    assert {k: config[k] for k in ("placement", "reduction_factor", "bottleneck_size", "non_linearity",
                                   "hidden_size", "num_layers", "model_type")} == {
        "placement": "pfeiffer", "reduction_factor": 16, "bottleneck_size": 2, "non_linearity": "relu",
        "hidden_size": HIDDEN, "num_layers": LAYERS, "model_type": "bert"}
    assert config["base_model"] == {"id": "tiny-bert", "sha256": ctx.base_model.sha256}

    model, tokenizer, labels = load_classifier(ctx.output_dir, tiny_model_dir)
    rows = [json.loads(line) for line in open(ctx.validation_file)]
    with_adapters = predict(model, tokenizer, rows, labels)
    for layer in model.bert.encoder.layer:  # the adapters, not only the head, shape the logits
        del getattr(layer.output, STACK)["task"]
    without = predict(model, tokenizer, rows, labels)
    assert max(abs(a - b) for x, y in zip(with_adapters, without) for a, b in zip(x["logits"], y["logits"])) > 1e-7


def test_houlsby_with_layer_norms_reloads_to_the_jobs_predictions(make_ctx, tiny_model_dir):
    settings = {"placement": "houlsby", "non_linearity": "gelu", "train_layer_norm": True, "reduction_factor": 4}
    ctx = make_ctx("adapter", settings)
    run_strategy(ctx)
    tensors, config = _artifact(ctx)
    for i in range(LAYERS):
        for site in ("attention.output", "output"):
            assert tensors[f"bert.encoder.layer.{i}.{site}.{STACK}.task.up.weight"].shape == (HIDDEN, HIDDEN // 4)
            assert f"bert.encoder.layer.{i}.{site}.LayerNorm.weight" in tensors
    assert "bert.embeddings.LayerNorm.bias" in tensors
    base_names = {k for k in tensors if STACK not in k and not k.startswith("classifier.")}
    assert base_names and all(".LayerNorm." in k for k in base_names)
    assert (config["placement"], config["non_linearity"], config["train_layer_norm"]) == ("houlsby", "gelu", True)

    model, tokenizer, labels = load_classifier(ctx.output_dir, tiny_model_dir)
    job = [json.loads(line) for line in open(ctx.output_dir / "eval" / "predictions.jsonl")]
    rows = [json.loads(line) for line in open(ctx.validation_file)]
    for mine, theirs in zip(predict(model, tokenizer, rows, labels), job, strict=True):
        assert mine["predicted"] == theirs["predicted"]
        assert max(abs(a - b) for a, b in zip(mine["logits"], theirs["logits"])) < 1e-5


def test_artifact_size_scales_with_one_over_reduction_factor(make_ctx, tiny_model_dir):
    """On the tiny model the adapters hold exactly sites·(2·h·b + b + h) numbers, b = h // factor,
    so their projection matrices shrink as 1/reduction_factor; the file is those plus the head."""
    base_params = None
    matrices = {}
    for factor in (2, 16):
        ctx = make_ctx("adapter", {"reduction_factor": factor}, output=f"rf{factor}")
        run_strategy(ctx)
        tensors = load_file(ctx.output_dir / WEIGHTS)
        adapter = {k: v for k, v in tensors.items() if STACK in k}
        assert sum(v.numel() for v in adapter.values()) == _adapter_params(LAYERS, HIDDEN, factor)
        matrices[factor] = sum(v.numel() for k, v in adapter.items() if k.endswith(".weight"))
        numbers = sum(v.numel() for v in tensors.values())
        size = (ctx.output_dir / WEIGHTS).stat().st_size
        assert 4 * numbers < size < 4 * numbers + 2048  # float32 tensors + the safetensors header
        if base_params is None:
            model, _, _ = load_classifier(ctx.output_dir, tiny_model_dir)
            base_params = sum(p.numel() for n, p in model.named_parameters() if STACK not in n)
    assert matrices[2] == 8 * matrices[16]
    # the analogous fraction of the tiny model at the default factor: ~1% of its (embedding-heavy) weights
    assert _adapter_params(LAYERS, HIDDEN, 16) / base_params < 0.01


@pytest.mark.parametrize("placement, limit", [("pfeiffer", 0.006), ("houlsby", 0.01)])
def test_default_artifact_is_under_one_percent_of_minilm_l6(placement, limit):
    """all-MiniLM-L6-v2's shape (384 hidden, 6 layers, 1536 FFN, 30522 words), built on the meta
    device: adapters at the default factor 16 plus a 2-label head stay under 1% of the base."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                        intermediate_size=1536, num_labels=2)
    with torch.device("meta"):
        model = BertForSequenceClassification(config)
    base = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("classifier."))
    insert_adapters(model, "task", placement, 384 // 16, "relu", 1e-3)
    shipped = sum(p.numel() for n, p in model.named_parameters() if STACK in n or n.startswith("classifier."))
    sites = 6 * (2 if placement == "houlsby" else 1)
    assert shipped == _adapter_params(sites, 384, 16) + 384 * 2 + 2
    assert shipped / base < limit


def test_adapter_sits_before_the_residual_layer_norm_and_starts_near_identity():
    """On a RoBERTa (the other family the method promises): site output = LN(stack(dense(h)) + residual)."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=40)
    model = RobertaForSequenceClassification(config).eval()
    ids = torch.randint(3, 60, (2, 7))
    before = model(input_ids=ids).logits
    insert_adapters(model, "task", "houlsby", 8, "swish", 1e-3)
    assert (model(input_ids=ids).logits - before).abs().max() < 1e-3  # near-zero init: still the base
    site = model.roberta.encoder.layer[1].attention.output
    with torch.no_grad():
        for projection in (site.adapters["task"].down, site.adapters["task"].up):
            projection.weight.normal_()  # make the adapter matter
    seen = {}
    site.register_forward_hook(lambda m, args, out: seen.update(args=args, out=out))
    model(input_ids=ids)
    hidden, residual = seen["args"]
    projected = torch.nn.functional.linear(hidden, site.dense.weight, site.dense.bias)  # without the hook
    expected = site.LayerNorm(site.adapters(projected) + residual)
    assert torch.allclose(seen["out"], expected, atol=1e-6)
    assert not torch.allclose(seen["out"], site.LayerNorm(projected + residual), atol=1e-3)


def test_named_adapters_stack_in_insertion_order():
    """The stacking hook MAD-X needs later: a second named bottleneck at the same sites runs after the first."""
    from transformers import BertConfig, BertForSequenceClassification

    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32)).eval()
    insert_adapters(model, "language", "pfeiffer", 4, "relu", 1e-2)
    insert_adapters(model, "task", "pfeiffer", 2, "relu", 1e-2)
    stack = model.bert.encoder.layer[0].output.adapters
    assert list(stack) == ["language", "task"]
    assert len(model.bert.encoder.layer[0].output.dense._forward_hooks) == 1  # one hook per site
    h = torch.randn(3, 16)
    assert torch.allclose(stack(h), stack["task"](stack["language"](h)))


def test_reduction_factor_that_leaves_no_width_is_refused(make_ctx):
    with pytest.raises(TrainingError) as info:
        run_strategy(make_ctx("adapter", {"reduction_factor": 64}))
    err = info.value
    assert err.code == "invalid_method_settings" and err.param == "method.adapter.reduction_factor"
    assert "hidden size 32" in err.message and "<= 32" in err.message


@pytest.mark.parametrize("settings, field", [
    ({"reduction_factor": 0}, "reduction_factor"), ({"reduction_factor": 1025}, "reduction_factor"),
    ({"placement": "parallel"}, "placement"), ({"non_linearity": "tanh"}, "non_linearity"),
    ({"init_scale": 0}, "init_scale"),
])
def test_impossible_settings_are_refused_before_training(settings, field):
    with pytest.raises(MethodError) as info:
        parse_method({"type": "adapter", "adapter": settings})
    assert info.value.param == f"method.adapter.{field}"


def test_non_bert_architecture_is_refused(make_ctx, tiny_model_dir, tmp_path):
    import dataclasses
    import shutil

    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    distil = tmp_path / "tiny-distilbert"
    DistilBertForSequenceClassification(DistilBertConfig(vocab_size=600, dim=32, n_layers=1, n_heads=2,
                                                         hidden_dim=64)).save_pretrained(distil)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        if (tiny_model_dir / name).is_file():
            shutil.copy(tiny_model_dir / name, distil / name)
    ctx = make_ctx("adapter")
    ctx.base_model = dataclasses.replace(ctx.base_model, id="tiny-distilbert", path=distil)
    with pytest.raises(TrainingError) as info:
        run_strategy(ctx)
    assert info.value.code == "invalid_base_model" and "'distilbert'" in info.value.message


def test_other_base_is_refused(make_ctx, tiny_model_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from tests.tiny_models import make_tiny_bert

    ctx = make_ctx("adapter")
    run_strategy(ctx)
    same_shape = make_tiny_bert(tmp_path / "other-seed", seed=1)
    with pytest.raises(TrainingError) as info:  # the manifest's content hash
        load_classifier(ctx.output_dir, same_shape)
    assert info.value.code == "base_model_mismatch" and "tiny-bert" in info.value.message
    wider = AutoModelForSequenceClassification.from_pretrained(make_tiny_bert(tmp_path / "wider", hidden=64),
                                                               num_labels=2)
    with pytest.raises(TrainingError) as info:  # apply itself, given a base of another shape
        apply_adapter(wider, ctx.output_dir)
    assert info.value.code == "base_model_mismatch" and "64" in info.value.message

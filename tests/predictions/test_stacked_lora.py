"""Stacked LoRA batches give what peft's own mixed-adapter forward gives, row for row: adapters of other
ranks and other target modules, rows naming no adapter; a pool holding a DoRA adapter (peft refuses mixed
batches with DoRA) runs one adapter at a time instead."""
from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import BertConfig, BertForSequenceClassification

from app.predictions.stacked_lora import BASE_ROW, StackedLora


def _model(configs: dict[str, LoraConfig]):
    torch.manual_seed(0)
    base = BertForSequenceClassification(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                                    num_attention_heads=2, intermediate_size=64, num_labels=3))
    names = list(configs)
    model = get_peft_model(base, configs[names[0]], adapter_name=names[0])
    for name in names[1:]:
        model.add_adapter(name, configs[name])
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if "lora_" in param_name or "modules_to_save" in param_name:
                param.normal_(std=0.2)  # lora_B starts at zero: give every adapter a real effect
    return model.eval()


def _lora(r: int, modules: list[str], **extra) -> LoraConfig:
    return LoraConfig(r=r, lora_alpha=2 * r, target_modules=modules, modules_to_save=["classifier"], **extra)


def _batch(rows: int) -> dict[str, torch.Tensor]:
    ids = torch.randint(1, 100, (rows, 7), generator=torch.Generator().manual_seed(1))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@pytest.mark.parametrize("configs", [
    {"t1": _lora(4, ["query", "value"]), "t2": _lora(8, ["query", "value"]), "t3": _lora(2, ["query", "value"])},
    {"t1": _lora(4, ["query", "value"]), "t2": _lora(4, ["key", "dense"])},  # other modules: zeros where absent
], ids=["ranks", "modules"])
def test_stacked_rows_equal_peft_mixed_batches(configs):
    model = _model(configs)
    names = list(configs)
    rows = [names[i % len(names)] for i in range(9)]
    stacked = StackedLora()
    with torch.no_grad():
        expected = model(**_batch(9), adapter_names=rows).logits
        with stacked.rows(model, names, rows):
            got = model(**_batch(9), adapter_names=rows).logits
        alone = [model(**{k: v[i:i + 1] for k, v in _batch(9).items()}, adapter_names=[rows[i]]).logits
                 for i in range(9)]
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(got, torch.cat(alone), atol=1e-5)  # each row as if its adapter served it alone
    assert len({tuple(r.tolist()) for r in got.round(decimals=4)}) > 1  # the adapters really differ


def test_rows_naming_no_adapter_get_the_base_and_the_layers_are_restored():
    model = _model({"t1": _lora(4, ["query", "value"]), "t2": _lora(4, ["query", "value"])})
    stacked = StackedLora()
    lora_layers = [m for m in model.modules() if hasattr(m, "lora_A")]
    with torch.no_grad():
        expected = model(**_batch(4), adapter_names=["t1", BASE_ROW, "t2", BASE_ROW]).logits
        with stacked.rows(model, ["t1", "t2"], ["t1", BASE_ROW, "t2", BASE_ROW]):
            assert all("forward" in vars(m) for m in lora_layers)
            got = model(**_batch(4), adapter_names=["t1", BASE_ROW, "t2", BASE_ROW]).logits
    assert torch.allclose(got, expected, atol=1e-5)
    assert not any("forward" in vars(m) for m in lora_layers)  # peft's own forward again after the block


def test_stacks_follow_the_adapters_loaded():
    model = _model({"t1": _lora(4, ["query"]), "t2": _lora(4, ["query"])})
    stacked = StackedLora()
    with torch.no_grad(), stacked.rows(model, ["t1", "t2"], ["t1", "t2"]):
        model(**_batch(2), adapter_names=["t1", "t2"])
    model.delete_adapter("t2")
    stacked.invalidate()
    with torch.no_grad():
        expected = model(**_batch(2), adapter_names=["t1", "t1"]).logits
        with stacked.rows(model, ["t1"], ["t1", "t1"]):
            got = model(**_batch(2), adapter_names=["t1", "t1"]).logits
    assert torch.allclose(got, expected, atol=1e-5)


def test_a_pool_with_a_dora_adapter_serves_one_adapter_at_a_time(tmp_path):
    from app.predictions.engines import LoraPool

    trained = _model({"t1": _lora(4, ["query"]), "t2": _lora(4, ["query"], use_dora=True)})
    trained.save_pretrained(tmp_path)  # each adapter in its own folder, tmp_path/<name>
    rows = ["t1", "t2", "t1"]
    with torch.no_grad():
        alone = []
        for i, name in enumerate(rows):
            trained.set_adapter(name)
            alone.append(trained(**{k: v[i:i + 1] for k, v in _batch(3).items()}).logits)
    pool = LoraPool(_model({"t1": _lora(4, ["query"])}).unload())
    pool.add("t1", str(tmp_path / "t1"))
    assert pool.mixable
    pool.add("t2", str(tmp_path / "t2"))
    assert not pool.mixable
    with torch.no_grad():
        got = pool.logits(_batch(3), rows)
    assert torch.allclose(got, torch.cat(alone), atol=1e-5)
    pool.remove("t2")
    assert pool.mixable

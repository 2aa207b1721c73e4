"""The torch-free base-model facts the API checks method settings against, and their agreement with
what the strategies see once the model is loaded (so a 400 at submission is exactly a train-time refusal)."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from app.training.base_facts import base_facts, is_embedding, numel, read_base_facts, read_header


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int]]]) -> Path:
    """A safetensors file of zero-filled tensors, name → (dtype, shape), written by hand (no torch)."""
    sizes = {"F32": 4, "I64": 8}
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        end = offset + sizes[dtype] * numel(tuple(shape))
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, end]}
        offset = end
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))
    return path


def test_facts_of_a_tiny_bert(tiny_model_dir):
    facts = read_base_facts(tiny_model_dir, "tiny-bert")
    assert (facts.model_type, facts.depth, facts.hidden_size, facts.usable_positions) == ("bert", 2, 32, 128)
    # the pretraining checkpoint's `bert.` prefix is stripped and its `cls.` heads left out
    assert "encoder.layer.1.attention.self.query.weight" in facts.tensors
    assert not [name for name in facts.tensors if name.startswith(("bert.", "cls."))]
    assert facts.linear_names() == ["dense", "key", "query", "value"]
    assert facts.linear_names(exclude={"query"}) == ["dense", "key", "value"]
    assert facts.has_module("pooler") and facts.has_module("attention.self") and facts.has_module("classifier")
    assert not facts.has_module("decoder")


def test_integer_buffers_shards_and_roberta_positions(tmp_path):
    """Int tensors (position_ids) are buffers, not parameters; a sharded checkpoint is read through its
    index; RoBERTa-style embeddings lose pad_token_id + 1 positions."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "roberta", "num_hidden_layers": 1, "hidden_size": 4,
                                                      "max_position_embeddings": 514, "pad_token_id": 1}))
    write_safetensors(tmp_path / "a.safetensors", {"roberta.embeddings.word_embeddings.weight": ("F32", [10, 4]),
                                                   "roberta.embeddings.position_ids": ("I64", [1, 514])})
    write_safetensors(tmp_path / "b.safetensors", {"roberta.encoder.layer.0.attention.self.query.weight": ("F32", [4, 4]),
                                                   "lm_head.dense.weight": ("F32", [4, 4])})
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "x": "a.safetensors", "y": "b.safetensors"}}))
    assert read_header(tmp_path / "a.safetensors") == {"roberta.embeddings.word_embeddings.weight": (10, 4)}
    facts = read_base_facts(tmp_path, "r")
    assert set(facts.tensors) == {"embeddings.word_embeddings.weight", "encoder.layer.0.attention.self.query.weight"}
    assert facts.usable_positions == 512 and facts.linear_names() == ["query"]


def test_facts_are_cached_per_directory_and_refreshed_when_it_changes(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "num_hidden_layers": 2}))
    first = base_facts(tmp_path, "a")
    assert first.tensors is None and base_facts(tmp_path, "b").name == "b"  # same directory, another id
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "num_hidden_layers": 12}))
    os.utime(tmp_path / "config.json", ns=(1, 1))
    assert base_facts(tmp_path, "a").depth == 12
    (tmp_path / "model.safetensors").write_bytes(b"\xff" * 12)  # a header length far beyond the file
    assert base_facts(tmp_path, "a") is None and base_facts(tmp_path / "missing", "a") is None


@pytest.mark.parametrize("drop, reinit, include_embeddings", [(0, 0, False), (0, 0, True), (1, 0, False),
                                                              (0, 1, False), (1, 1, True)])
def test_facts_count_what_the_loaded_model_projects(tmp_path, drop, reinit, include_embeddings):
    """SAID's d bound and the peft target names, from the facts, equal what the strategies compute on the
    loaded classifier after drop/reinit_top_layers (app.training.structure)."""
    from transformers import AutoModelForSequenceClassification

    from app.training.peft_adapter import linear_module_names, new_module_names
    from app.training.strategies.said.projection import select_targets
    from app.training.structure import drop_top_layers, reinit_top_layers
    from tests.tiny_models import make_tiny_bert

    path = make_tiny_bert(tmp_path / "bert3", layers=3)
    model, info = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2, output_loading_info=True)
    new = set(info["missing_keys"])
    if drop:
        drop_top_layers(model, drop)
    if reinit:
        new |= reinit_top_layers(model, reinit, seed=0)
    targets = select_targets(model, new, include_embeddings)
    facts = read_base_facts(path, "bert3")
    counted = [shape for name, shape in facts.pretrained_tensors(drop, reinit).items()
               if include_embeddings or not is_embedding(name)]
    assert (len(counted), sum(map(numel, counted))) == (len(targets), sum(t.numel for t in targets))
    assert facts.linear_names() == linear_module_names(model, exclude=set(new_module_names(new)))


def test_checking_every_method_against_a_base_stays_torch_free(tmp_path):
    """The API's whole path: discover every strategy, read a base's facts, check each method's defaults."""
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "num_hidden_layers": 2, "hidden_size": 64,
                                                      "max_position_embeddings": 512}))
    write_safetensors(tmp_path / "model.safetensors", {  # LoRA's default targets must exist (checked too)
        f"encoder.layer.0.{name}.weight": ("F32", [64, 64]) for name in
        ("attention.self.query", "attention.self.key", "attention.self.value", "output.dense")})
    code = ("import sys; from pathlib import Path; import app.jobs.service; "
            "from app.training.base_facts import base_facts; from app.training.registry import list_strategies; "
            "from app.training.methods import base_problems, parse_method; "
            f"facts = base_facts(Path({str(tmp_path)!r}), 'm'); "
            "two = [{'name': 'a', 'training_file': 'file-a'}, {'name': 'b', 'training_file': 'file-b'}]; "
            "raw = lambda s: {'type': s.name, s.name: {'adaptive': {'tapt': True}, 'multitask': {'tasks': two}}"
            ".get(s.name, {})}; "
            "problems = [base_problems(parse_method(raw(s)), facts) for s in list_strategies()]; "
            "assert not any(problems), problems; "
            "bad = [m for m in ('torch', 'transformers', 'peft', 'numpy') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)

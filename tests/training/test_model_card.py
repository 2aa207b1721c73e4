"""A task artifact is a ready folder: config.json with the labels, peft's adapter config naming the
base by its public name, and a model card whose own three lines load the model in a fresh process
(the base resolved by that name from a Hugging Face cache, offline) and reproduce the job's predictions."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from app.training.base import BaseModelRef
from app.training.model_card import base_name
from app.training.registry import get_strategy, run_strategy
from tests.hub_cache import hub_cache
from tests.training.conftest import MATRIX_SETTINGS, context_factory

METHODS = ("lora", "prompt_tuning", "bitfit", "supervised")


@pytest.fixture(scope="module")
def artifacts(base_ref, tmp_path_factory) -> dict[str, Path]:
    make = context_factory(base_ref, tmp_path_factory.mktemp("cards"))
    out = {}
    for method in METHODS:
        ctx = make(method, MATRIX_SETTINGS.get(method, {}), output=method)
        assert run_strategy(ctx).status == "succeeded"
        out[method] = ctx.output_dir
    return out


def card_code(card: str) -> str:
    return re.search(r"```python\n(.*?)```", card, re.S).group(1)


@pytest.mark.parametrize("method", METHODS)
def test_artifact_carries_labelled_config_and_model_card(method, artifacts):
    art = artifacts[method]
    config = json.loads((art / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"} and config["label2id"] == {"neg": 0, "pos": 1}
    assert "_name_or_path" not in config and config["architectures"] == ["BertForSequenceClassification"]
    card = (art / "README.md").read_text()
    manifest = json.loads((art / "manifest.json").read_text())
    assert "README.md" in manifest["files"] and "config.json" in manifest["files"]
    for fact in (f"`{method}`", "`tiny-bert`", "16 training examples, 6 validation examples", "`neg`, `pos`",
                 f"eval_accuracy {manifest['metrics']['eval_accuracy']:.4g}", "## Use it"):
        assert fact in card, fact
    assert len(card_code(card).strip().splitlines()) <= 3
    if (art / "adapter").is_dir():
        adapter = json.loads((art / "adapter" / "adapter_config.json").read_text())
        assert adapter["base_model_name_or_path"] == "tiny-bert"  # its id: tiny-bert has no hub name
        assert not (art / "adapter" / "README.md").exists()  # PEFT's empty template is gone


def test_known_bases_are_named_by_their_hub_id(base_ref, tmp_path):
    ctx = context_factory(replace(base_ref, id="minilm-l6"), tmp_path)("lora")
    assert base_name(ctx) == "sentence-transformers/all-MiniLM-L6-v2"
    assert base_name(replace(ctx, base_model=BaseModelRef("custom", tmp_path, "0" * 64))) == "custom"


CHECK = textwrap.dedent("""
    import json, math, sys
    method, code, base = sys.argv[1:4]
    exec(code.replace("<directory of tiny-bert>", base))
    preds = [json.loads(l) for l in open("ftjob-test/eval/predictions.jsonl")]
    texts = [json.loads(l)["text"] for l in open(sys.argv[4])]
    worst = 0.0
    if method == "bitfit":
        for got, want in zip(classify(texts), preds):
            assert got["predicted"] == want["predicted"]
            worst = max(worst, *(abs(a - b) for a, b in zip(got["logits"], want["logits"])))
    else:
        for got, want in zip(classify(texts, truncation=True, max_length=16), preds):
            top = max(want["logits"])
            p = 1 / sum(math.exp(l - top) for l in want["logits"])
            assert got["label"] == want["predicted"]
            worst = max(worst, abs(got["score"] - p))
    print(json.dumps({"worst": worst, "n": len(preds)}))
""")


def test_model_card_lines_load_the_artifact_in_a_fresh_process(artifacts, tiny_model_dir, tmp_path):
    env = dict(os.environ, **hub_cache(tmp_path / "hub", {"tiny-bert": tiny_model_dir}), PYTHONPATH=os.getcwd())
    for method in METHODS:
        here = tmp_path / method
        shutil.copytree(artifacts[method], here / "ftjob-test")
        code = card_code((here / "ftjob-test" / "README.md").read_text())
        valid = artifacts[method].parent / f"{method}-valid.jsonl"
        done = subprocess.run([sys.executable, "-c", CHECK, method, code, str(tiny_model_dir), str(valid)],
                              cwd=here, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{method} ({get_strategy(method).reload}):\n{code}\n{done.stderr[-3000:]}"
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["n"] == 6 and result["worst"] < 1e-4, (method, result)

"""text_to_text on tiny random T5 / GPT-2 / Llama (tests/tiny_text_models.py): learning a tiny mapping (full and
LoRA), classification rows generated as labels, chat rows with the loss on assistant turns only, exact
pause/resume, and a fresh-process reload that generates what the job's own evaluation generated."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from app.fsio import directory_sha256
from app.training.base import BaseModelRef
from app.training.registry import run_strategy
from tests.tiny_text_models import SIGNALS, make_mapping_rows, make_tiny_gpt2, make_tiny_llama, make_tiny_t5
from tests.training.conftest import ListSink, context_factory

CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} </s> {% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|> {% endif %}")


def _ref(path, name):
    return BaseModelRef(id=name, path=path, sha256=directory_sha256(path))


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    return _ref(make_tiny_t5(tmp_path_factory.mktemp("t5")), "tiny-t5")


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    return _ref(make_tiny_gpt2(tmp_path_factory.mktemp("gpt2")), "tiny-gpt2")


@pytest.fixture(scope="module")
def trained() -> dict:
    """Contexts of the jobs test_learns_a_tiny_mapping ran, by (base, lora), for tests that read their artifacts."""
    return {}


def _train(base, tmp_path, settings=None, **kw):
    make = context_factory(base, tmp_path)
    params = {"n_epochs": 15, "batch_size": 8, "learning_rate": 1e-2, "max_length": 24, "select_best": False,
              "eval_every": 10_000}  # evaluated once, at the end
    ctx = make("text_to_text", settings or {}, train_rows=kw.pop("train_rows", make_mapping_rows(48, seed=1)),
               valid_rows=kw.pop("valid_rows", make_mapping_rows(12, seed=2)), **{**params, **kw})
    return ctx, run_strategy(ctx)


LORA = {"peft": "lora", "r": 8, "lora_alpha": 64, "lora_dropout": 0.0, "target_modules": "all-linear"}


@pytest.mark.parametrize("base, settings, hyper", [
    ("t5", {}, {"n_epochs": 10}), ("gpt2", {}, {}), ("t5", LORA, {"n_epochs": 20}), ("gpt2", LORA, {"n_epochs": 20}),
])
def test_learns_a_tiny_mapping(base, settings, hyper, request, tmp_path, trained):
    ctx, result = _train(request.getfixturevalue(base), tmp_path, settings, **hyper)
    trained[base, bool(settings)] = ctx
    assert result.status == "succeeded"
    assert result.metrics["eval_accuracy"] >= 0.9, result.metrics  # random init generates no partner word
    manifest = json.loads((ctx.output_dir / "manifest.json").read_text())
    assert manifest["task"] == "text_to_text" and manifest["kind"] == ("seq2seq" if base == "t5" else "decoder")
    folder = "adapter" if settings else "model"
    assert (ctx.output_dir / folder).is_dir() and not (ctx.output_dir / ("model" if settings else "adapter")).exists()
    rows = [json.loads(line) for line in (ctx.output_dir / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert sum(r["generated"] == r["target"] for r in rows) >= 0.9 * len(rows)


def test_classification_rows_generate_labels_and_count_unmatched(t5, tmp_path):
    from tests.tiny_models import make_classification_rows

    sink = ListSink()
    ctx, result = _train(t5, tmp_path, train_rows=make_classification_rows(48, seed=1),
                         valid_rows=make_classification_rows(12, seed=2), sink=sink)
    manifest = json.loads((ctx.output_dir / "manifest.json").read_text())
    assert manifest["labels"] == ["neg", "pos"] and manifest["source_task"] == "sequence_classification"
    assert result.metrics["eval_accuracy"] >= 0.9 and "eval_unmatched" in manifest["metrics"]
    assert any("matched no label" in text for text in sink.of("message"))


def test_chat_loss_covers_assistant_turns_only(tmp_path):
    from transformers import AutoTokenizer

    from app.training.strategies.text_to_text.encoding import encode_chat

    messages = [{"role": "system", "content": "be good", "weight": 1}, {"role": "user", "content": "good day"},
                {"role": "assistant", "content": "happy", "weight": 1}, {"role": "user", "content": "bad night"},
                {"role": "assistant", "content": "sad", "weight": 0}, {"role": "user", "content": "table"},
                {"role": "assistant", "content": "chair now", "weight": 1}]
    for template in (None, CHAT_TEMPLATE):
        tokenizer = AutoTokenizer.from_pretrained(make_tiny_gpt2(tmp_path / str(bool(template)), chat_template=template))
        row = encode_chat(tokenizer, messages, 64)
        learned = tokenizer.convert_ids_to_tokens([t for t in row["labels"] if t >= 0])
        assert learned == ["happy", "</s>", "chair", "now", "</s>"], (template, learned)  # not "sad" (weight 0)
        assert len(row["labels"]) == len(row["input_ids"])


def test_chat_rows_train_a_llama_and_pause_resume_equals_a_straight_run(tmp_path):
    base = _ref(make_tiny_llama(tmp_path / "llama"), "tiny-llama")
    rows = [{"messages": [{"role": "user", "content": row["input"]}, {"role": "assistant", "content": row["target"]}]}
            for row in make_mapping_rows(24, seed=3)]
    make = context_factory(base, tmp_path)
    params = {"n_epochs": 2, "batch_size": 8, "learning_rate": 3e-3, "max_length": 32}
    straight = make("text_to_text", {}, train_rows=rows, n_valid=0, output="straight", **params)
    assert run_strategy(straight).status == "succeeded"
    paused = make("text_to_text", {}, train_rows=rows, n_valid=0, output="resumed", sink=ListSink(stop_at_step=4,
                  stop_reason="pause"), **params)
    assert run_strategy(paused).status == "paused"
    from app.training.checkpoints import latest_complete_checkpoint

    resumed = make("text_to_text", {}, train_rows=rows, n_valid=0, output="resumed",
                   resume_from=latest_complete_checkpoint(paused.checkpoint_dir), **params)
    assert run_strategy(resumed).status == "succeeded"
    from safetensors.torch import load_file

    a, b = (load_file(c.output_dir / "model" / "model.safetensors") for c in (straight, resumed))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert json.loads((straight.output_dir / "manifest.json").read_text())["task"] == "chat"


def test_a_fresh_process_generates_what_the_job_generated(gpt2, tmp_path, trained):
    """The LoRA adapter over its base, loaded in another process, generates what the job's evaluation did."""
    ctx = trained.get(("gpt2", True)) or _train(gpt2, tmp_path, LORA, n_epochs=20)[0]
    inputs = [row["input"] for row in make_mapping_rows(12, seed=2)]
    code = ("import json, sys; from pathlib import Path; "
            "from app.training.strategies.text_to_text.model import load_text_model; "
            "from app.training.strategies.text_to_text.generation import generate; "
            f"model, tok, kind = load_text_model(Path({str(ctx.output_dir)!r}), Path({str(gpt2.path)!r})); "
            f"print(json.dumps(generate(model, tok, kind, {inputs!r}, 24, 32)))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in (ctx.output_dir / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert json.loads(out.strip().splitlines()[-1]) == [r["generated"] for r in rows]
    assert set(SIGNALS.values()) & {r["generated"] for r in rows}


def test_lora_adapters_of_one_base_share_it_when_served(gpt2, tmp_path, trained):
    """Two LoRA jobs over one GPT-2: the serving engine loads the base once (one TextPool) and each adapter
    generates what its own job's evaluation generated."""
    from app.predictions.batcher import Work
    from app.predictions.engines import Engines
    from app.predictions.served import describe

    first = trained.get(("gpt2", True)) or _train(gpt2, tmp_path / "a", LORA, n_epochs=20)[0]
    second, _ = _train(gpt2, tmp_path, {**LORA, "r": 4}, n_epochs=2)
    engines = Engines(max_adapters=4, max_models=1, batch_rows=8)
    inputs = [(row["input"], None) for row in make_mapping_rows(12, seed=2)]
    works = [Work(describe(f"job-{i}", ctx.output_dir, gpt2), inputs) for i, ctx in enumerate((first, second))]
    engines.run(works)
    assert len(engines.text_pools) == 1 and {w.served.kind for w in works} == {"text"}
    for work, ctx in zip(works, (first, second)):
        rows = [json.loads(line) for line in (ctx.output_dir / "eval" / "predictions.jsonl").read_text().splitlines()]
        assert [answer["text"] for answer in work.future.result()] == [r["generated"] for r in rows]

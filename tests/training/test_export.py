"""Merged export on the tiny random BERT: every artifact that applies over a base folds into plain
weights whose predictions equal the artifact's (logits within 1e-4), loaded in a fresh process with
transformers alone; what cannot fold (virtual tokens, bottleneck adapters, a whole model already,
no classifier) is refused with the reason."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from app.training.base import TrainingError
from app.training.export import check_plain, export_merged, export_refusal
from app.training.registry import run_strategy
from tests.training.conftest import context_factory

# (case id, method, settings): each mergeable method once, LoRA also with DoRA and a dropped layer
MERGEABLE = [
    ("lora", "lora", {"r": 4}),
    ("lora_dora_drop", "lora", {"r": 4, "use_dora": True, "drop_top_layers": 1}),
    ("ia3", "ia3", {}),
    ("bitfit", "bitfit", {}),
    ("partial", "partial", {"top_layers": 1}),
    ("diff_pruning", "diff_pruning", {}),
    ("said", "said", {"d": 200}),
]
TEXTS = ["good great day", "awful sad night", "the table is fine", "a poor film but lovely song"]


@pytest.fixture(scope="module")
def exported(base_ref, tmp_path_factory):
    """Each case trained (2 epochs at a high rate, so its weights move well away from the base) and
    exported into `<case>-merged`."""
    root = tmp_path_factory.mktemp("export")
    make = context_factory(base_ref, root)
    runs = {}
    for case, method, settings in MERGEABLE:
        ctx = make(method, settings, output=case, n_epochs=2, learning_rate=3e-2)
        assert run_strategy(ctx).status == "succeeded"
        export_merged(ctx.output_dir, base_ref.path, root / f"{case}-merged")
        runs[case] = (ctx, root / f"{case}-merged")
    return runs


def _logits(model, tokenizer, texts=TEXTS):
    import torch

    with torch.no_grad():
        return model(**tokenizer(texts, padding=True, truncation=True, return_tensors="pt")).logits


@pytest.mark.parametrize("case", [c for c, _, _ in MERGEABLE])
def test_merged_weights_predict_as_the_artifact(case, exported, base_ref):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from app.training.artifacts import load_classifier

    ctx, merged_dir = exported[case]
    applied, tokenizer, labels = load_classifier(ctx.output_dir, base_ref.path)
    merged = AutoModelForSequenceClassification.from_pretrained(merged_dir).eval()
    merged_tokenizer = AutoTokenizer.from_pretrained(merged_dir)
    assert merged_tokenizer.model_max_length == 16  # the job's max_length travels with the export
    assert [merged.config.id2label[i] for i in range(len(labels))] == labels
    assert (_logits(applied, tokenizer) - _logits(merged, merged_tokenizer)).abs().max().item() < 1e-4
    # the merge really moved base encoder weights (a dropped adapter would leave them untouched)
    base = AutoModelForSequenceClassification.from_pretrained(base_ref.path, num_labels=2).state_dict()
    moved = max((tensor - base[name]).abs().max().item() for name, tensor in merged.state_dict().items()
                if ".encoder." in name and name in base and base[name].shape == tensor.shape)
    assert moved > 1e-4, case


FRESH = """
import json, sys, torch
from pathlib import Path
from transformers import AutoModelForSequenceClassification, AutoTokenizer
worst = {}
for case, merged, art, valid in zip(sys.argv[1::4], map(Path, sys.argv[2::4]), map(Path, sys.argv[3::4]), sys.argv[4::4]):
    model = AutoModelForSequenceClassification.from_pretrained(merged).eval()
    tok = AutoTokenizer.from_pretrained(merged)
    rows = [json.loads(line) for line in open(valid) if line.strip()]
    preds = [json.loads(line) for line in open(art / "eval" / "predictions.jsonl")]
    worst[case] = 0.0
    for row, pred in zip(rows, preds, strict=True):
        with torch.no_grad():
            logits = model(**tok(row["text"], return_tensors="pt", truncation=True)).logits[0]
        worst[case] = max(worst[case], (logits - torch.tensor(pred["logits"])).abs().max().item())
        assert model.config.id2label[int(logits.argmax())] == str(pred["predicted"])
bad = [m for m in ("peft", "app") if m in sys.modules]
assert not bad, bad
print(json.dumps(worst))
"""


def test_merged_exports_load_with_plain_transformers_in_a_fresh_process(exported):
    """No tuneforge, no peft: the merged dirs reproduce the predictions the jobs themselves wrote."""
    args = []
    for case, (ctx, merged_dir) in exported.items():
        args += [case, str(merged_dir), str(ctx.output_dir), str(ctx.validation_file)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", FRESH, *args], capture_output=True, text=True, env=env, check=False,
                         cwd="/")
    assert out.returncode == 0, out.stderr[-3000:]
    worst = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(worst) == set(exported) and max(worst.values()) < 1e-4, worst


def test_bottleneck_adapters_are_refused_and_never_saved_half_merged(make_ctx, base_ref, tmp_path):
    from app.training.artifacts import load_classifier

    ctx = make_ctx("adapter", n_valid=0)
    run_strategy(ctx)
    assert "non-linearity" in export_refusal(ctx.output_dir)
    with pytest.raises(TrainingError) as info:
        export_merged(ctx.output_dir, base_ref.path, tmp_path / "merged")
    assert info.value.code == "not_mergeable" and not (tmp_path / "merged").exists()
    # the generic guard catches it too, should the refusal ever miss such a method
    with pytest.raises(TrainingError) as guard:
        check_plain(load_classifier(ctx.output_dir, base_ref.path)[0])
    assert "adapters" in guard.value.message


def _fake_artifact(path, method: str, **extra) -> None:
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps({"method": method, **extra}))


@pytest.mark.parametrize(("method", "peft_type", "expected"), [
    ("prompt_tuning", "PROMPT_TUNING", "virtual tokens cannot fold"),
    ("prefix_tuning", "PREFIX_TUNING", "virtual tokens cannot fold"),
    ("supervised", None, "already full weights"),
    ("adaptive", None, "trained no classifier"),
])
def test_unmergeable_artifacts_say_why(method, peft_type, expected, tmp_path):
    _fake_artifact(tmp_path / "art", method)
    if peft_type:
        (tmp_path / "art" / "adapter").mkdir()
        (tmp_path / "art" / "adapter" / "adapter_config.json").write_text(json.dumps({"peft_type": peft_type}))
    assert expected in export_refusal(tmp_path / "art")


def test_adaptive_with_a_task_method_is_judged_by_that_method(tmp_path):
    _fake_artifact(tmp_path / "art", "adaptive", task_method="lora")
    assert export_refusal(tmp_path / "art") is None


@pytest.mark.parametrize("method", ["lora", "bitfit", "supervised"])
def test_a_mean_pooling_head_is_refused_since_plain_heads_read_cls(method, tmp_path):
    _fake_artifact(tmp_path / "art", method, settings={"pooling": "mean"})
    assert "pooling 'mean'" in export_refusal(tmp_path / "art")
    _fake_artifact(tmp_path / "cls", "lora", settings={"pooling": "cls"})
    assert export_refusal(tmp_path / "cls") is None

"""Task types beyond single-label classification (issue 17): NER, regression, multi-label.

Files are validated per type (a mixed file names its first offending line); each type trains through
the one loop on a tiny random BERT and learns a trivially learnable synthetic set well above chance;
the metrics match hand-computed and seqeval's documented values; every task method trains every type
its spec declares, and the artifact reloads in a fresh process and reproduces the job's predictions.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from app.training.artifacts import read_manifest
from app.training.base import TrainingError
from app.training.data import DatasetError, load_classification_examples, validate_classification_file
from app.training.metrics import entity_metrics, multi_label_metrics, regression_metrics
from app.training.registry import get_strategy, run_strategy
from tests.task_rows import multi_label_rows, ner_rows, regression_rows
from tests.tiny_models import write_jsonl
from tests.training.conftest import MATRIX_SETTINGS, context_factory, task_methods

ROWS = {"token_classification": ner_rows, "regression": regression_rows, "multi_label_classification": multi_label_rows}
# methods the matrix cannot run on a plain training file (they need inputs of their own)
NEEDS_INPUTS = {"tlm": "needs a corpus", "multitask": "needs several training files"}


def _file(tmp_path, text: str):
    path = tmp_path / "data.jsonl"
    path.write_text(text)
    return path


# --- files -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rows, task, labels", [
    ('{"tokens": ["Ada", "met", "Bo"], "tags": ["B-PER", "O", "B-PER"]}\n'
     '{"tokens": ["in", "Oslo"], "tags": ["O", "B-LOC"]}\n', "token_classification",
     ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]),
    ('{"text": "a", "label": 0.5}\n{"text": "b", "label": 2}\n', "regression", []),
    ('{"text": "a", "label": 2}\n{"text": "b", "label": 0.25}\n', "regression", []),  # integers, then a fraction
    ('{"text": "a", "labels": ["x", "y"]}\n{"text": "b", "labels": []}\n', "multi_label_classification", ["x", "y"]),
    ('{"text": "a", "label": 1}\n{"text": "b", "label": 2}\n', "sequence_classification", [1, 2]),
])
def test_the_task_type_is_inferred_from_the_rows(tmp_path, rows, task, labels):
    path = _file(tmp_path, rows)
    summary = validate_classification_file(path)
    assert (summary.task, summary.labels, summary.n_examples) == (task, labels, 2)
    examples = load_classification_examples(path)
    assert len(examples) == 2
    if task == "regression":
        assert all(isinstance(e.label, float) for e in examples)


@pytest.mark.parametrize("rows, line, fragment", [
    ('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n{"tokens": ["c"], "tags": ["O"]}\n', 3,
     "is a token-classification row"),
    ('{"text": "a", "labels": ["x"]}\n\n{"text": "b", "label": 0.5}\n', 3, "line 1 is a multi-label row"),
    ('{"text": "a", "label": "x"}\n{"text": "b", "label": 0.5}\n', 2, "is a regression row"),
    ('{"text": "a", "label": 0.5}\n{"text": "b", "label": "x"}\n', 2, "is a classification row"),
    ('{"tokens": ["a", "b"], "tags": ["O"]}\n', 1, "has 2 tokens but 1 tags"),
    ('{"tokens": ["a"], "tags": ["PER"]}\n', 1, "is not a BIO tag"),
    ('{"tokens": [], "tags": []}\n', 1, '"tokens" must be a non-empty array'),
    ('{"tokens": ["a", " "], "tags": ["O", "O"]}\n', 1, "token 1 must be a non-blank string"),
    ('{"text": "a", "label": 0.5}\n{"text": "b", "label": NaN}\n', 2, "regression labels must be finite"),
    ('{"text": "a", "label": 0.5}\n{"text": "b", "label": Infinity}\n', 2, "must be finite"),
    ('{"text": "a", "labels": "x"}\n', 1, '"labels" must be an array'),
    ('{"text": "a", "labels": ["x"], "label": "x"}\n', 1, 'has both "label" and "labels"'),
    ('{"tokens": ["a"], "tags": ["O"]}\n', None, 'every tag is "O"'),
    ('{"text": "a", "label": 0.5}\n{"text": "b", "label": 0.5}\n', None, "regression needs labels that vary"),
    ('{"text": "a", "labels": ["x"]}\n', None, "at least 2 label classes"),
])
def test_bad_task_files_name_the_line(tmp_path, rows, line, fragment):
    with pytest.raises(DatasetError) as info:
        validate_classification_file(_file(tmp_path, rows))
    assert info.value.line == line and fragment in info.value.message, str(info.value)


# --- metrics -----------------------------------------------------------------------------------------

def test_entity_metrics_match_seqeval_documented_example():
    # seqeval's README example: one of two gold entities found exactly, one of two predicted is right
    gold = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    predicted = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    scores = entity_metrics(predicted, gold)
    assert scores == {"eval_precision": 0.5, "eval_recall": 0.5, "eval_f1": 0.5, "eval_accuracy": 0.8}


def test_multi_label_metrics_by_hand():
    # label 0: tp 1, fp 1, fn 0 -> F1 2/3; label 1: tp 1, fp 0, fn 1 -> 2/3; label 2: never there -> 0
    predicted = [[1, 1, 0], [1, 0, 0]]
    gold = [[1, 1, 0], [0, 1, 0]]
    scores = multi_label_metrics(predicted, gold, 3)
    assert scores["eval_accuracy"] == 0.5  # the first row's set is exactly right
    assert scores["eval_micro_f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    assert scores["eval_macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)


def test_auto_threshold_is_the_grid_point_with_the_best_micro_f1():
    """Rare labels: positives at probability 0.3, negatives at 0.1 — nothing applies at 0.5, everything
    right from 0.15 to 0.30; the tie goes to the point nearest 0.5."""
    import torch

    from app.training.tasks import Rows, get_task

    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    gold = [[1, 0], [0, 1], [0, 0], [1, 1]]
    outputs = [torch.tensor([logit(0.3) if g else logit(0.1) for g in row]) for row in gold]
    rows = Rows(features=[], label_ids=gold, pad_id=0)
    auto = get_task("multi_label_classification", None).metrics(outputs, rows)
    assert auto["eval_threshold"] == 0.3 and auto["eval_micro_f1"] == 1.0 and auto["eval_accuracy"] == 1.0
    fixed = get_task("multi_label_classification", 0.5).metrics(outputs, rows)
    assert fixed["eval_micro_f1"] == 0.0 and "eval_threshold" not in fixed


@pytest.mark.parametrize("threshold, n_valid", [("auto", 24), ("auto", 0), (0.35, 24)])
def test_the_multi_label_threshold_reaches_the_manifest_and_predictions(threshold, n_valid, make_ctx):
    """auto: the final model's validation choice is the artifact's (manifest, predictions file, and
    `predict` after load_classifier without a threshold); 0.5 without a validation file; a number as given."""
    from app.training.artifacts import load_classifier, predict
    from app.training.tasks.sequence import THRESHOLD_GRID

    ctx = make_ctx("supervised", {"multi_label_threshold": threshold}, train_rows=multi_label_rows(48, 1),
                   valid_rows=multi_label_rows(n_valid, 2) if n_valid else None, n_valid=n_valid, n_epochs=2)
    result = run_strategy(ctx)
    manifest = read_manifest(ctx.output_dir)
    chosen = manifest["multi_label_threshold"]
    events = [text for text in ctx.sink.of("message") if text.startswith("Multi-label threshold")]
    if threshold != "auto":
        assert chosen == threshold and "eval_threshold" not in result.metrics and not events
    elif n_valid:
        assert chosen in THRESHOLD_GRID and chosen == result.metrics["eval_threshold"]
        assert events == [f"Multi-label threshold {chosen:g}, chosen on validation micro-F1 "
                          f"({result.metrics['eval_micro_f1']:.4f}) among 0.05-0.95"]
    else:
        assert chosen == 0.5 and events and "has none" in events[0]
    assert json.loads((ctx.output_dir / "config.json").read_text())["multi_label_threshold"] == chosen
    model, tokenizer, labels = load_classifier(ctx.output_dir, ctx.base_model.path)
    if n_valid:
        written = [json.loads(line)["predicted"] for line in open(ctx.output_dir / "eval" / "predictions.jsonl")]
        valid = [json.loads(line) for line in open(ctx.validation_file)]
        assert [row["predicted"] for row in predict(model, tokenizer, valid, labels)] == written
    probabilities = predict(model, tokenizer, ["x"], labels)[0]["probabilities"]
    assert predict(model, tokenizer, ["x"], labels)[0]["predicted"] == [
        label for label in labels if probabilities[label] >= chosen]


def test_regression_metrics_by_hand():
    scores = regression_metrics([1.0, 2.0, 3.0, 5.0], [1.0, 3.0, 2.0, 4.0])
    assert scores["eval_mse"] == pytest.approx((0 + 1 + 1 + 1) / 4)
    # Pearson: means 2.75 / 2.5; sxy = 2.625 - 0.375 - 0.125 + 3.375 = 5.5, sxx = 8.75, syy = 5
    assert scores["eval_pearson"] == pytest.approx(5.5 / math.sqrt(8.75 * 5))
    assert scores["eval_spearman"] == pytest.approx(0.8)  # ranks 1,2,3,4 vs 1,3,2,4: 1 - 6·2/(4·15)
    tied = regression_metrics([1.0, 1.0, 2.0], [1.0, 2.0, 3.0])  # tied predictions share rank 1.5
    assert tied["eval_spearman"] == pytest.approx(math.sqrt(3) / 2)
    assert math.isnan(regression_metrics([1.0, 1.0], [0.0, 1.0])["eval_pearson"])


# --- training ----------------------------------------------------------------------------------------

def test_labels_go_to_each_words_first_sub_token(make_ctx):
    from app.training.classification import load_task
    from app.training.tasks.base import IGNORED

    rows = [{"tokens": ["good!", "day"], "tags": ["B-PER", "O"]}, {"tokens": ["bad"], "tags": ["B-LOC"]}]
    ctx = make_ctx("supervised", train_rows=rows, n_valid=0)
    task = load_task(ctx)
    train, _ = task.rows(16)
    ids = {label: i for i, label in enumerate(task.labels)}
    # [CLS] good ! day [SEP]: "!" continues the word "good!"
    assert train.label_ids[0] == [IGNORED, ids["B-PER"], IGNORED, ids["O"], IGNORED]
    batch = train.batch([0, 1], task.device)
    assert batch["labels"].tolist()[1] == [IGNORED, ids["B-LOC"], IGNORED, IGNORED, IGNORED]  # padded


LEARN = {  # (rows, metric, floor, chance): chance is the score of the best constant answer on the same rows
    "token_classification": ("eval_f1", 0.9, 0.0),
    "regression": ("eval_pearson", 0.8, 0.0),
    "multi_label_classification": ("eval_micro_f1", 0.72, 0.667),  # all labels on: F1 = 2·0.5/(1 + 0.5)
}


@pytest.mark.parametrize("task", list(LEARN))
def test_each_type_learns_a_learnable_set(task, make_ctx):
    metric, floor, chance = LEARN[task]
    ctx = make_ctx("supervised", train_rows=ROWS[task](128, 1), valid_rows=ROWS[task](32, 2), n_epochs=15,
                   learning_rate=3e-3)
    result = run_strategy(ctx)
    assert result.status == "succeeded"
    assert result.metrics[metric] >= floor > chance, result.metrics
    manifest = read_manifest(ctx.output_dir)
    assert manifest["task"] == task and manifest["metrics"][metric] == result.metrics[metric]
    assert any(text.startswith("Task: ") and task.split("_")[0] in text.replace("-", "_")
               for text in ctx.sink.of("message"))
    predictions = [json.loads(line) for line in open(ctx.output_dir / "eval" / "predictions.jsonl")]
    assert len(predictions) == 32
    first = predictions[0]["predicted"]
    assert {"token_classification": isinstance(first, list) and all(isinstance(t, str) for t in first),
            "regression": isinstance(first, float),
            "multi_label_classification": isinstance(first, list)}[task]


def test_a_method_refuses_a_task_type_its_spec_excludes(make_ctx):
    ctx = make_ctx("prompt_tuning", train_rows=ner_rows(8), n_valid=0)
    with pytest.raises(TrainingError, match="prompt_tuning cannot train token_classification"):
        run_strategy(ctx)
    assert "token_classification" not in get_strategy("cloze").task_kinds and get_strategy("cloze").task_note


def test_validation_file_of_another_type_fails_the_job(make_ctx):
    ctx = make_ctx("supervised", train_rows=regression_rows(8), valid_rows=multi_label_rows(4))
    with pytest.raises(TrainingError, match="validation_file holds multi_label_classification rows"):
        run_strategy(ctx)


def _matrix() -> list[tuple[str, str]]:
    return [(method, task) for method in task_methods() if method not in NEEDS_INPUTS
            for task in ROWS if task in get_strategy(method).task_kinds]


RELOAD = """
import json, sys
from pathlib import Path
from app.training.artifacts import load_classifier, predict
for art, base in json.loads(sys.argv[1]):
    model, tokenizer, labels = load_classifier(Path(art), Path(base))
    rows = [json.loads(line) for line in open(f"{art}/eval/predictions.jsonl")]
    examples = [json.loads(line) for line in open(f"{art}.valid.jsonl")]
    got = predict(model, tokenizer, examples, labels)  # a multi-label artifact's own threshold, from its manifest
    assert [g["predicted"] for g in got] == [r["predicted"] for r in rows], (art, got[:2], rows[:2])
print("reloaded", len(json.loads(sys.argv[1])))
"""


def test_every_method_trains_every_task_type_and_reloads(base_ref, tmp_path):
    """The registry matrix for the new task types: each method × each type its spec declares trains
    (2 epochs × 2 steps) and its artifact, loaded in a fresh process, predicts what the job predicted."""
    make, artifacts = context_factory(base_ref, tmp_path), []
    for method, task in _matrix():
        name = f"{method}-{task}"
        valid = ROWS[task](6, 2)
        ctx = make(method, MATRIX_SETTINGS.get(method, {}), output=name, train_rows=ROWS[task](16, 1),
                   valid_rows=valid, n_epochs=2)
        result = run_strategy(ctx)
        assert result.status == "succeeded" and result.steps == 4, name
        assert read_manifest(ctx.output_dir)["task"] == task, name
        write_jsonl(tmp_path / f"{name}.valid.jsonl", valid)
        artifacts.append((str(ctx.output_dir), str(base_ref.path)))
    assert len(artifacts) >= 9 * 3 - 1  # prompt tuning: no token classification
    out = subprocess.run([sys.executable, "-c", RELOAD, json.dumps(artifacts)], capture_output=True, text=True,
                         timeout=600, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-1500:]


def test_a_ner_lora_job_exports_merged_and_its_card_says_token_classification(base_ref, make_ctx, tmp_path):
    """The ready folder names the per-token head (model card, config.json) and a merged export is a plain
    BertForTokenClassification that tags like the adapter over its base."""
    import torch
    from transformers import AutoModelForTokenClassification

    from app.training.artifacts import load_classifier
    from app.training.export import export_merged

    ctx = make_ctx("lora", {"r": 4}, train_rows=ner_rows(16, 1), valid_rows=ner_rows(4, 2), n_epochs=2)
    assert run_strategy(ctx).status == "succeeded"
    card = (ctx.output_dir / "README.md").read_text()
    assert "pipeline_tag: token-classification" in card and "AutoModelForTokenClassification" in card
    assert json.loads((ctx.output_dir / "config.json").read_text())["architectures"] == ["BertForTokenClassification"]
    export_merged(ctx.output_dir, base_ref.path, tmp_path / "merged")
    merged = AutoModelForTokenClassification.from_pretrained(tmp_path / "merged").eval()
    adapted, tokenizer, _ = load_classifier(ctx.output_dir, base_ref.path)
    batch = tokenizer([["good", "table", "bad"]], is_split_into_words=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(merged(**batch).logits, adapted(**batch).logits, atol=1e-5)


def test_ner_predictions_tag_every_word_with_character_spans(make_ctx):
    """Words past max_length are tagged O; entity spans index the text as given (irregular spacing too),
    and {"tokens": [...]} inputs span the tokens joined by single spaces."""
    from app.training.artifacts import load_classifier, predict

    ctx = make_ctx("supervised", train_rows=ner_rows(64, 1), valid_rows=ner_rows(8, 2), n_epochs=10,
                   learning_rate=3e-3)
    assert run_strategy(ctx).status == "succeeded"
    model, tokenizer, labels = load_classifier(ctx.output_dir)
    text = "  great   chair  the bad "
    [row] = predict(model, tokenizer, [text], labels)
    assert len(row["predicted"]) == 4 and row["predicted"][2] == "O"
    assert [(e["entity"], e["text"], text[e["start"]:e["end"]]) for e in row["entities"]] == \
        [("PER", "great   chair", "great   chair"), ("LOC", "bad", "bad")]
    [row] = predict(model, tokenizer, [{"tokens": ["great", "chair", "the", "bad"]}], labels)
    assert [(e["start"], e["end"], e["words"]) for e in row["entities"]] == [(0, 11, [0, 2]), (16, 19, [3, 4])]
    tokenizer.model_max_length = 4  # [CLS] two words [SEP]: the last two words are cut off
    [row] = predict(model, tokenizer, [text], labels)
    assert row["predicted"][2:] == ["O", "O"] and len(row["predicted"]) == 4


def test_a_regression_head_starts_at_the_labels_mean(make_ctx):
    """Labels far from 0 (here around 100) train from their mean: the head's bias starts there, the event
    says so, and a few small-rate steps already land near the labels (a head at 0 would miss by ~100)."""
    from app.training.classification import build_classifier, load_task

    rows = [{**row, "label": row["label"] + 100.0} for row in regression_rows(32, 1)]
    ctx = make_ctx("supervised", train_rows=rows, valid_rows=rows[:8], n_epochs=2, learning_rate=1e-4)
    task = load_task(ctx)
    classifier = build_classifier(ctx, task, lambda model, ctx, new: model)
    mean = sum(r["label"] for r in rows) / len(rows)
    assert float(classifier.model.classifier.bias) == pytest.approx(mean, rel=1e-6)
    assert f"Regression head starts at the training labels' mean {mean:.4g}" in ctx.sink.of("message")
    result = run_strategy(make_ctx("supervised", train_rows=rows, valid_rows=rows[:8], n_epochs=2,
                                   learning_rate=1e-4, output="run"))
    assert result.metrics["eval_mse"] < 2.0


@pytest.mark.parametrize("method, task", [("supervised", "token_classification"), ("lora", "multi_label_classification"),
                                          ("bitfit", "regression")])
def test_pause_then_resume_matches_an_uninterrupted_run(method, task, make_ctx):
    """The task types ride the same exact-resume loop: paused mid-epoch, resumed, the weights equal (1e-6)."""
    from safetensors.torch import load_file

    from app.training.checkpoints import latest_complete_checkpoint
    from tests.training.conftest import ListSink

    common = dict(settings=MATRIX_SETTINGS.get(method, {}), train_rows=ROWS[task](24, 1),
                  valid_rows=ROWS[task](6, 2), n_epochs=2)
    straight = make_ctx(method, output="straight", **common)
    assert run_strategy(straight).status == "succeeded"
    paused = make_ctx(method, output="resumed", sink=ListSink(stop_at_step=4, stop_reason="pause"), **common)
    assert run_strategy(paused).status == "paused"
    resumed = make_ctx(method, output="resumed", resume_from=latest_complete_checkpoint(paused.checkpoint_dir), **common)
    assert run_strategy(resumed).status == "succeeded"
    weights = get_strategy(method).artifact_files[0]
    a, b = load_file(straight.output_dir / weights), load_file(resumed.output_dir / weights)
    assert a.keys() == b.keys() and all((a[k] - b[k]).abs().max().item() <= 1e-6 for k in a)
    assert read_manifest(resumed.output_dir)["metrics"] == pytest.approx(read_manifest(straight.output_dir)["metrics"],
                                                                         abs=1e-6)

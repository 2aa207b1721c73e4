"""Which evaluated checkpoint a job keeps: each task type's own validation figure, then lower loss."""
from __future__ import annotations

from app.training.best import score, selection_metric


def test_multi_label_checkpoints_rank_by_micro_f1_not_subset_accuracy():
    # sparse labels: subset accuracy stays 0 while micro-F1 tells the checkpoints apart
    early = {"eval_accuracy": 0.0, "eval_micro_f1": 0.31, "eval_loss": 0.29}
    late = {"eval_accuracy": 0.0, "eval_micro_f1": 0.0, "eval_loss": 0.27}
    assert score(early) > score(late)
    assert selection_metric(early) == ("eval_micro_f1", 0.31)


def test_ner_ranks_by_entity_f1_single_label_by_accuracy_regression_by_loss():
    assert score({"eval_f1": 0.6, "eval_accuracy": 0.90, "eval_loss": 1.0}) > score(
        {"eval_f1": 0.5, "eval_accuracy": 0.95, "eval_loss": 0.5})
    assert score({"eval_accuracy": 0.9, "eval_macro_f1": 0.5, "eval_loss": 1.0}) > score(
        {"eval_accuracy": 0.8, "eval_macro_f1": 0.9, "eval_loss": 0.5})
    assert score({"eval_pearson": 0.1, "eval_loss": 0.4}) > score({"eval_pearson": 0.9, "eval_loss": 0.5})
    assert selection_metric({"eval_pearson": 0.1, "eval_loss": 0.4})[0] == ""
    assert score({"eval_score": 0.7, "eval_accuracy": 0.1, "eval_loss": 1}) > score(
        {"eval_score": 0.6, "eval_accuracy": 0.9, "eval_loss": 0.1})  # a mixture's mean task figure comes first

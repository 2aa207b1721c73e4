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


def _offers(tmp_path, figures: list[float], rows: int = 500, reopen_after: int | None = None) -> int | None:
    """Offer checkpoints scoring `figures` (steps 1, 2, …) and return the picked step; `reopen_after`: a new
    BestCheckpoint (a resumed run) takes over after that many offers."""
    import torch

    from app.training.best import BestCheckpoint, standard_error

    model = torch.nn.Linear(2, 1)
    best = BestCheckpoint(tmp_path, score, standard_error)
    for step, figure in enumerate(figures, start=1):
        if step - 1 == reopen_after:
            best = BestCheckpoint(tmp_path, score, standard_error)
        with torch.no_grad():
            model.weight.fill_(step)
        best.offer(step, {"eval_accuracy": figure, "eval_loss": 1.0, "eval_samples": rows}, model)
    return best.record["step"]


def test_the_latest_checkpoint_within_one_standard_error_is_picked(tmp_path):
    # SE at 0.93 over 500 rows: 0.0114. 0.925 is within it of the best, 0.91 is not
    assert _offers(tmp_path / "a", [0.90, 0.93, 0.925, 0.91]) == 3
    assert _offers(tmp_path / "b", [0.90, 0.93, 0.925, 0.92]) == 4
    # a clear collapse after the best is never picked; a new best always is
    assert _offers(tmp_path / "c", [0.90, 0.93, 0.50, 0.52]) == 2
    assert _offers(tmp_path / "d", [0.90, 0.93, 0.92, 0.95, 0.945]) == 5
    # more validation rows, a tighter rule: SE at 0.93 over 50,000 rows is 0.0011
    assert _offers(tmp_path / "e", [0.90, 0.93, 0.925], rows=50_000) == 2


def test_a_resumed_run_keeps_the_best_figure_it_had(tmp_path):
    """The best so far is saved with the pick, so a re-queued run picks as an uninterrupted one does."""
    assert _offers(tmp_path / "a", [0.93, 0.925, 0.91], reopen_after=2) == 2
    assert _offers(tmp_path / "b", [0.90, 0.93, 0.925, 0.915], reopen_after=3) == 3


def test_without_row_counts_or_for_loss_alone_the_strict_best_stays(tmp_path):
    from app.training.best import standard_error

    assert standard_error({"eval_accuracy": 0.9, "eval_loss": 1.0}) == 0.0
    assert standard_error({"eval_pearson": 0.9, "eval_loss": 1.0, "eval_samples": 100}) == 0.0
    assert abs(standard_error({"eval_accuracy": 0.9, "eval_samples": 100}) - 0.03) < 1e-12

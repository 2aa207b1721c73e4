"""The result file's rows, from metrics events as the engine reports them."""
from __future__ import annotations

from app.jobs.results import metrics_rows, result_file_id


def test_training_and_evaluation_at_one_step_share_a_row():
    rows = metrics_rows([
        {"step": 1, "train_loss": 0.9, "learning_rate": 1e-3},
        {"step": 2, "train_loss": 0.8},
        {"step": 2, "eval_loss": 0.7, "eval_accuracy": 0.5, "eval_macro_f1": 0.4},
        {"step": 2, "flops": 1.0},  # nothing the CSV shows: no row, no change
    ])
    assert rows == [{"step": 1, "train_loss": 0.9},
                    {"step": 2, "train_loss": 0.8, "valid_loss": 0.7, "valid_accuracy": 0.5}]


def test_a_later_phase_counting_steps_anew_keeps_its_own_rows():
    rows = metrics_rows([{"step": 1, "train_loss": 3.0}, {"step": 2, "train_loss": 2.5},
                         {"step": 1, "train_loss": 0.7}, {"data": "no step", "train_loss": 1}])
    assert [r["step"] for r in rows] == [1, 2, 1]


def test_the_result_file_id_follows_from_the_jobs():
    assert result_file_id("ftjob-abc123") == "file-abc123"

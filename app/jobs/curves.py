"""A job's learning curves as one PNG (`curves.png`): train and eval loss, and eval accuracy, against the
optimizer step, drawn from the rows of its metrics CSV (app/jobs/results.py), so the picture and the
result file always show the same numbers.

Served live at `GET /v1/fine_tuning/jobs/{id}/curves.png` and written into the artifact folder when the
job succeeds. matplotlib is imported only when a picture is drawn (`import app.main` stays light), and
only its object API is used (no pyplot state), so API threads may draw at the same time.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from app.core.errors import Conflict
from app.jobs.results import metrics_events, metrics_rows
from app.models import Job
from app.training.artifacts import add_to_manifest

FILENAME = "curves.png"
WIDTH, HEIGHT, DPI = 960, 420, 100  # pixels of every picture
LOSSES = (("train_loss", "train loss"), ("valid_loss", "eval loss"))
METRIC = ("valid_accuracy", "eval accuracy")


def job_curve_rows(session: Session, job: Job) -> list[dict[str, Any]]:
    """The job's metrics rows so far; a 409 `metrics_not_ready` before its first step was measured (the
    job exists, and asking again once it trains helps)."""
    rows = metrics_rows(metrics_events(session, job.id))
    if not rows:
        raise Conflict(f"Job {job.id} has no metrics yet (status {job.status}); its curves appear once it has "
                       "trained a step.", param="job_id", code="metrics_not_ready")
    return rows


def write_curves(output_dir: Path, title: str, rows: list[dict[str, Any]]) -> bool:
    """Draw `rows` into `output_dir/curves.png` and list it in the folder's manifest; False (nothing
    written) when there is nothing to draw."""
    if not rows:
        return False
    (output_dir / FILENAME).write_bytes(render_curves(rows, title))
    add_to_manifest(output_dir, FILENAME)
    return True


def render_curves(rows: list[dict[str, Any]], title: str) -> bytes:
    """A WIDTH x HEIGHT PNG: losses on the left, eval accuracy (0-1) on the right. A phase that counts
    its steps anew (adaptive pretraining, then the task) starts a new stretch of each line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    loss_axes, metric_axes = figure.subplots(1, 2)
    for column, label in LOSSES:
        _plot(loss_axes, rows, column, label)
    _plot(metric_axes, rows, METRIC[0], METRIC[1])
    loss_axes.set(title="loss", xlabel="step")
    metric_axes.set(title=METRIC[1], xlabel="step", ylim=(0, 1.02))
    if loss_axes.lines:
        loss_axes.legend(loc="upper right")
    if not metric_axes.lines:
        metric_axes.text(0.5, 0.5, "no evaluation\n(the job has no validation file)", ha="center", va="center",
                         transform=metric_axes.transAxes, color="gray")
    figure.suptitle(title)
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI)
    return out.getvalue()


def _plot(axes: Any, rows: list[dict[str, Any]], column: str, label: str) -> None:
    """One line per stretch of increasing steps, one colour and one legend entry for all of them; the
    sparse evaluations (and any lone point) get a marker on each value."""
    color = None
    for stretch in _stretches([(row["step"], row[column]) for row in rows if _finite(row.get(column))]):
        steps, values = zip(*stretch)
        marker = "o" if column != "train_loss" or len(stretch) == 1 else None
        (line,) = axes.plot(steps, values, marker=marker, markersize=3, color=color,
                            label=label if color is None else None)
        color = line.get_color()


def _stretches(points: list[tuple[int, float]]) -> list[list[tuple[int, float]]]:
    stretches: list[list[tuple[int, float]]] = []
    for point in points:
        if not stretches or point[0] < stretches[-1][-1][0]:
            stretches.append([])
        stretches[-1].append(point)
    return stretches


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

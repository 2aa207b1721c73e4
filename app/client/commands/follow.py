"""`tuneforge jobs follow`: a job's event stream drawn as a live bar (step/total, train loss, eval score,
time left) with each event printed above it as it arrives, until the job ends. Without a terminal (a
pipe, a log) only the event lines are written.

Steps and totals come from the events themselves: "Training … for N steps" carries `total_steps`, each
metrics event `step`, `train_loss` and, when evaluated, `eval_accuracy` (else `eval_loss`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.client.commands.common import out

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from app.client.client import TuneforgeClient
    from app.client.types import Job, JobEvent

LEVEL_STYLES = {"warn": "yellow", "error": "bold red"}
EVAL_KEYS = ("eval_accuracy", "eval_loss")


def training_bar() -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("step"), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[eval]}"),
                    TimeRemainingColumn(), console=out(), disable=not out().is_terminal)


def event_line(event: JobEvent) -> str:
    from rich.markup import escape

    from app.client.commands.common import when

    line = f"{when(event.created_at)} {event.level:<5} {escape(event.message)}"
    style = LEVEL_STYLES.get(event.level)
    return f"[{style}]{line}[/]" if style else line


def bar_fields(data: dict[str, Any]) -> dict[str, Any]:
    """What one event's data changes on the bar."""
    fields: dict[str, Any] = {}
    if isinstance(data.get("total_steps"), int):
        fields["total"] = data["total_steps"]
    if isinstance(data.get("step"), int) and "train_loss" in data:
        fields["completed"] = data["step"]
    if isinstance(data.get("train_loss"), int | float):
        fields["loss"] = f"{data['train_loss']:.4f}"
    for key in EVAL_KEYS:
        if isinstance(data.get(key), int | float):
            fields["eval"] = f"{key.removeprefix('eval_')} {data[key]:.4f}"
            break
    return fields


def follow_job(client: TuneforgeClient, job_id: str) -> Job:
    """Draw the job until it ends (KeyboardInterrupt passes through to the caller); the finished Job."""
    from app.client.types import Job

    job = client.get_job(job_id)
    with training_bar() as bar:
        task: TaskID = bar.add_task(f"{job.id} ({job.method_type} on {job.model})", total=None, loss="-", eval="")
        for item in client.follow(job_id):
            if isinstance(item, Job):
                return item
            bar.console.print(event_line(item))
            bar.update(task, **bar_fields(item.data or {}))
    return client.get_job(job_id)  # not reached: follow() ends with the Job


def final_line(job: Job) -> str:
    """One line saying how the job ended."""
    if job.status == "succeeded":
        return f"job {job.id} succeeded: fine-tuned model {job.fine_tuned_model}"
    error = job.error
    reason = f": {error.code}: {error.message}" if error and error.message else ""
    return f"job {job.id} {job.status}{reason}"

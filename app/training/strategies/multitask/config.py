from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from app.training.config import RESOLVED, MethodSettings
from app.training.data import CLASSIFICATION, MULTI_LABEL, REGRESSION, DatasetSummary
from app.training.methods import TaskMethod

MIXTURE_TYPES = (CLASSIFICATION, REGRESSION, MULTI_LABEL)


def mixture_type_problem(task: str) -> str | None:
    """Why a file of task type `task` cannot be a mixture task, or None: Muppet's heads read the pooled
    sequence, so token classification trains in `then` instead."""
    if task in MIXTURE_TYPES:
        return None
    return (f"holds {task} rows; multitask's heads read the pooled sequence (Muppet), so its tasks are "
            f"{', '.join(MIXTURE_TYPES)} files. Train token classification with `then` on the multitask encoder.")

MAX_TASKS = 32


def multitask_model_id(job_id: str) -> str:
    """The id a multitask job's shared encoder is registered under; later jobs name it as `model`."""
    return f"multitask:{job_id}"


class MultitaskTask(BaseModel):
    """One labelled task of the mixture: its own head, its own metrics."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.-]+$", description=(
        "Names the task's head and its metrics (eval_<name>_accuracy, train_<name>_loss): letters, digits, _ . -"))
    training_file: str = Field(description=(
        "id of an uploaded file (purpose fine-tune) of labelled rows, like a job's training_file: single-label "
        '({"text", "label"} or with "text_pair"), regression (a float "label") or multi-label ("labels": [...]) '
        "rows; token classification (NER) trains in `then`, not in the mixture (the heads read the pooled "
        "sequence, as Muppet's do)."))
    validation_file: str | None = Field(None, description=(
        "Optional: labelled rows of the same type scored for this task at each evaluation (eval_<name>_accuracy, "
        "_pearson or _micro_f1 in the events; their mean is eval_score, which picks the best checkpoint)."))


class MultitaskSettings(MethodSettings):
    """Multi-task pre-finetuning (Aghajanyan et al. 2021, "Muppet"): one shared encoder, one new head per
    task, every optimizer step on a heterogeneous batch whose rows are drawn from the tasks by `sampling`;
    a classification row's cross-entropy is divided by log(its task's number of labels) (Muppet's loss
    scaling), so tasks with many labels do not dominate; regression rows add their squared error,
    multi-label rows their binary cross-entropy. The encoder is registered as the model `multitask:<job id>`; `then`
    fine-tunes the job's training_file on it in the same job. Without `then`, the job's training_file
    joins the mixture as a task named "training_file" unless a task already names that file.
    `hyperparameters` is the mixture's schedule ("auto" sizes it by the job's training_file); an epoch is
    as many rows as all the tasks' training files hold together."""

    tasks: list[MultitaskTask] = Field(default_factory=list, max_length=MAX_TASKS, description=(
        f"The labelled tasks trained together (2-{MAX_TASKS}), each with a unique name."))
    sampling: Literal["proportional", "temperature"] = Field("proportional", description=(
        "How a batch row picks its task: proportional to the tasks' sizes (Muppet), or temperature: "
        "p_i ∝ n_i^(1/temperature), which gives small tasks more rows (T=1 is proportional; large T uniform)."))
    temperature: float = Field(2.0, gt=0, le=100, description="T of temperature sampling (only with sampling: temperature).")
    loss_scaling: bool = Field(True, description=(
        "Divide each row's cross-entropy by log(n labels of its task) (Aghajanyan et al. 2021); false: plain mean."))
    then: TaskMethod | None = Field(None, description=(
        'A task method fine-tuning the job\'s training_file on the multitask encoder, e.g. {"type": "lora"}; '
        "validated and resolved at submission. Omitted: the job's result is the encoder (and the tasks' heads)."))

    def named_files(self) -> dict[str, str]:
        """Every task's training file and validation file, as tasks.<i>.training_file / validation_file."""
        files = {}
        for i, task in enumerate(self.tasks):
            files[f"tasks.{i}.training_file"] = task.training_file
            if task.validation_file:
                files[f"tasks.{i}.validation_file"] = task.validation_file
        return files

    def check_named_file(self, name: str, data: DatasetSummary) -> str | None:
        return mixture_type_problem(data.task)

    @field_validator("tasks")
    @classmethod
    def _a_mixture(cls, tasks: list[MultitaskTask]) -> list[MultitaskTask]:
        if len(tasks) < 2:
            raise ValueError(f"needs at least two tasks to train together (got {len(tasks)}); for one intermediate "
                             "task, train it as its own job and name that job as the next job's model")
        names = [t.name for t in tasks]
        if duplicated := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"task names must differ; {duplicated} appear more than once")
        return tasks

    @field_validator("then")
    @classmethod
    def _then_on_this_encoder(cls, then):
        if then is not None and getattr(then.settings, "stack", None):
            raise ValueError("then cannot stack adapters: it trains on the multitask encoder, not on the base the "
                             "stacked adapters were trained on; submit the stacked adapter as its own job")
        return then

    @model_validator(mode="after")
    def _tasks_and_temperature(self, info: ValidationInfo) -> MultitaskSettings:
        if not self.tasks:
            raise ValueError('give tasks: [{"name": "...", "training_file": "file-..."}, ...], at least two')
        resolved = bool(info.context and info.context.get(RESOLVED))  # a stored method shows every default
        if "temperature" in self.model_fields_set and self.sampling != "temperature" and not resolved:
            raise ValueError('temperature applies only with sampling: "temperature"; drop it or set sampling')
        return self

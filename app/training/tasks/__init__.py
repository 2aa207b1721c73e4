"""Task types (inferred from the training file by app.training.data): what differs between them is the
head, the targets, the loss, the metrics and the output; the training loop (app.training.engine) and
the method's `prepare`/`save` are the same for all.

- sequence_classification: a softmax head, cross-entropy; accuracy, macro-F1 (Devlin et al. 2019).
- regression: one output, mean squared error; MSE, Pearson, Spearman (STS-B, Cer et al. 2017).
- multi_label_classification: one sigmoid per label, binary cross-entropy; a label applies when its
  probability reaches `threshold` (a job's multi_label_threshold; "auto" = chosen on validation micro-F1);
  micro-/macro-F1, subset accuracy.
- token_classification: a per-token softmax head (BIO tags), labels on each word's first sub-token
  (the others -100, ignored by the loss, as in Devlin et al. 2019's NER setup); entity-level
  precision/recall/F1 as seqeval defines them.
The losses are the transformers heads' own (`problem_type`), so `model(**batch).loss` is the task loss
everywhere the engine or a stability remedy reads it.
"""
from app.training.data import CLASSIFICATION, MULTI_LABEL, REGRESSION, TASK_TYPES, TOKEN_CLASSIFICATION
from app.training.tasks.base import Rows, Task
from app.training.tasks.sequence import MultiLabel, Regression
from app.training.tasks.tokens import TokenClassification

__all__ = ["Rows", "Task", "get_task"]


def get_task(name: str | None, threshold: float | None = 0.5) -> Task:
    """The Task of a manifest's or a training file's `task` (None: single-label classification); a
    multi-label `threshold` of None is chosen on the validation rows."""
    kinds = {CLASSIFICATION: Task, REGRESSION: Regression, MULTI_LABEL: MultiLabel,
             TOKEN_CLASSIFICATION: TokenClassification}
    assert set(kinds) == set(TASK_TYPES)
    name = name or CLASSIFICATION
    return kinds[name](name, threshold)

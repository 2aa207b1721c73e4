"""Classification metrics computed directly (no scikit-learn at run time)."""
from __future__ import annotations


def classification_metrics(predicted: list[int], gold: list[int], n_labels: int) -> dict[str, float]:
    """Accuracy and macro-F1 (mean F1 over all labels; a label never predicted nor present scores 0)."""
    correct = sum(p == g for p, g in zip(predicted, gold, strict=True))
    f1s = []
    for label in range(n_labels):
        tp = sum(p == label and g == label for p, g in zip(predicted, gold))
        fp = sum(p == label and g != label for p, g in zip(predicted, gold))
        fn = sum(p != label and g == label for p, g in zip(predicted, gold))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {"eval_accuracy": correct / max(1, len(gold)), "eval_macro_f1": sum(f1s) / max(1, n_labels)}

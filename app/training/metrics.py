"""Evaluation metrics of every task type, computed directly (no scikit-learn at run time) except the
entity-level NER scores, which are seqeval's own (the CoNLL-2000 conlleval definition)."""
from __future__ import annotations

import math
from collections.abc import Sequence


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def classification_metrics(predicted: list[int], gold: list[int], n_labels: int) -> dict[str, float]:
    """Accuracy and macro-F1 (mean F1 over all labels; a label never predicted nor present scores 0)."""
    correct = sum(p == g for p, g in zip(predicted, gold, strict=True))
    f1s = []
    for label in range(n_labels):
        tp = sum(p == label and g == label for p, g in zip(predicted, gold))
        fp = sum(p == label and g != label for p, g in zip(predicted, gold))
        fn = sum(p != label and g == label for p, g in zip(predicted, gold))
        f1s.append(_f1(tp, fp, fn))
    return {"eval_accuracy": correct / max(1, len(gold)), "eval_macro_f1": sum(f1s) / max(1, n_labels)}


def multi_label_metrics(predicted: Sequence[Sequence[int]], gold: Sequence[Sequence[int]],
                        n_labels: int) -> dict[str, float]:
    """Rows of 0/1 per label. Micro-F1 (counts pooled over every label), macro-F1 (mean per-label F1; a
    label never predicted nor present scores 0, as scikit-learn's zero_division=0) and subset accuracy
    (the row's whole label set right)."""
    counts = [[0, 0, 0] for _ in range(n_labels)]  # tp, fp, fn per label
    exact = 0
    for p_row, g_row in zip(predicted, gold, strict=True):
        exact += list(p_row) == list(g_row)
        for label, (p, g) in enumerate(zip(p_row, g_row, strict=True)):
            counts[label][0] += p and g
            counts[label][1] += p and not g
            counts[label][2] += g and not p
    pooled = [sum(c[i] for c in counts) for i in range(3)]
    return {"eval_accuracy": exact / max(1, len(gold)), "eval_micro_f1": _f1(*pooled),
            "eval_macro_f1": sum(_f1(*c) for c in counts) / max(1, n_labels)}


def _ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their mean rank (what Spearman's rho correlates)."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in order[start:end + 1]:
            ranks[i] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's r; NaN when either side is constant (the correlation is undefined)."""
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else math.nan


def regression_metrics(predicted: Sequence[float], gold: Sequence[float]) -> dict[str, float]:
    """Mean squared error, Pearson's r and Spearman's rho (Pearson over tie-averaged ranks), as STS-B
    reports them (Cer et al. 2017)."""
    mse = sum((p - g) ** 2 for p, g in zip(predicted, gold, strict=True)) / max(1, len(gold))
    return {"eval_mse": mse, "eval_pearson": pearson(predicted, gold),
            "eval_spearman": pearson(_ranks(predicted), _ranks(gold))}


def entity_metrics(predicted: list[list[str]], gold: list[list[str]]) -> dict[str, float]:
    """Entity-level micro precision, recall and F1 exactly as seqeval computes them (default mode: the
    conlleval script's chunking, Tjong Kim Sang & Buchholz 2000), plus token accuracy."""
    from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

    return {"eval_precision": float(precision_score(gold, predicted, zero_division=0)),
            "eval_recall": float(recall_score(gold, predicted, zero_division=0)),
            "eval_f1": float(f1_score(gold, predicted, zero_division=0)),
            "eval_accuracy": float(accuracy_score(gold, predicted))}

"""GLUE's metrics, as the GLUE benchmark defines them (and HF `evaluate`'s glue metric computes them):
Matthews correlation (CoLA), accuracy, binary F1 of the positive class (MRPC, QQP), Pearson and
Spearman correlation (STS-B); all x100. `glue_task_score` is the GLUE leaderboard's per-task
score: the mean of the task's metrics (MRPC: accuracy and F1; STS-B: Pearson and Spearman)."""

from __future__ import annotations

import math

from llmlab.metrics.registry import register

register("matthews_corr", "Matthews correlation coefficient of the predicted vs gold labels (GLUE CoLA), x100", unit="x100")
register("accuracy", "share of examples whose predicted label equals the gold label, x100", unit="x100")
register("f1", "F1 of the positive class (label 1) over the examples (GLUE MRPC, QQP), x100", unit="x100")
register("pearson", "Pearson correlation of predicted vs gold scores (GLUE STS-B), x100", unit="x100")
register("spearman", "Spearman rank correlation of predicted vs gold scores (GLUE STS-B), x100", unit="x100")
register("glue_task_score", "GLUE leaderboard per-task score: the mean of the task's GLUE metrics "
         "(CoLA MCC; MRPC/QQP accuracy and F1; STS-B Pearson and Spearman; accuracy elsewhere), x100", unit="x100")
register("gflops", "forward FLOPs of the fine-tuned model on one example of task.flops_length tokens, counted by "
         "torch.utils.flop_counter (2 per multiply-add), 1e9", higher_is_better=False, unit="GFLOPs")


def matthews_corr(pred: list[int], gold: list[int]) -> float:
    """Binary MCC (sklearn's definition; 0 when a marginal is empty)."""
    tp = sum(p == 1 and g == 1 for p, g in zip(pred, gold))
    tn = sum(p == 0 and g == 0 for p, g in zip(pred, gold))
    fp = sum(p == 1 and g == 0 for p, g in zip(pred, gold))
    fn = sum(p == 0 and g == 1 for p, g in zip(pred, gold))
    denom = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 100.0 * (tp * tn - fp * fn) / denom if denom else 0.0


def accuracy(pred: list, gold: list) -> float:
    return 100.0 * sum(p == g for p, g in zip(pred, gold)) / max(len(gold), 1)


def f1(pred: list[int], gold: list[int]) -> float:
    tp = sum(p == 1 and g == 1 for p, g in zip(pred, gold))
    fp = sum(p == 1 and g == 0 for p, g in zip(pred, gold))
    fn = sum(p == 0 and g == 1 for p, g in zip(pred, gold))
    return 100.0 * 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def pearson(pred: list[float], gold: list[float]) -> float:
    n = len(gold)
    if n < 2:
        return 0.0
    mp, mg = sum(pred) / n, sum(gold) / n
    cov = sum((p - mp) * (g - mg) for p, g in zip(pred, gold))
    sp = math.sqrt(sum((p - mp) ** 2 for p in pred))
    sg = math.sqrt(sum((g - mg) ** 2 for g in gold))
    return 100.0 * cov / (sp * sg) if sp and sg else 0.0


def _ranks(values: list[float]) -> list[float]:
    """Average ranks (ties share the mean of their positions), as scipy.stats.rankdata."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(pred: list[float], gold: list[float]) -> float:
    return pearson(_ranks(pred), _ranks(gold))


FUNCTIONS = {"matthews_corr": matthews_corr, "accuracy": accuracy, "f1": f1, "pearson": pearson, "spearman": spearman}


def glue_metrics(names: tuple, pred: list, gold: list) -> dict[str, float]:
    """The task's GLUE metrics and their mean `glue_task_score`."""
    out = {name: FUNCTIONS[name](pred, gold) for name in names}
    out["glue_task_score"] = sum(out.values()) / len(out)
    return out

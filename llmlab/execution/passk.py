"""The unbiased pass@k estimator (Chen et al. 2021; OOP-eval oop_evaluate/evaluation.py
`estimate_pass_at_k`): per problem 1 - C(n-c, k) / C(n, k), averaged over problems, and reported
only for the k that every problem has at least k samples for (`(total >= k).all()` there)."""

from __future__ import annotations

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k)/C(n, k) for one problem with n samples of which c are correct."""
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(totals: list[int], corrects: list[int], ks: list[int]) -> dict[int, float]:
    """{k: mean pass@k} for each k every problem reaches (as the official harness)."""
    out = {}
    for k in ks:
        if totals and all(n >= k for n in totals):
            out[k] = float(np.mean([pass_at_k(n, c, k) for n, c in zip(totals, corrects)]))
    return out

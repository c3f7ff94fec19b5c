"""Confidence intervals shared by the reader-study analyses (labels and boxes)."""

from __future__ import annotations


def wilson(k: int, n: int) -> tuple[float, float, float]:
    """Proportion k/n with its Wilson 95% interval (statsmodels); nan for n = 0."""
    from statsmodels.stats.proportion import proportion_confint

    if n == 0:
        return float("nan"), float("nan"), float("nan")
    lo, hi = proportion_confint(int(k), int(n), alpha=0.05, method="wilson")
    return k / n, float(lo), float(hi)

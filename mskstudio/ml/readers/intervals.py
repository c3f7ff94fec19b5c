"""Confidence intervals shared by the reader-study analyses (labels and boxes)."""

from __future__ import annotations

from mskstudio.ml.evaluate.metrics import wilson_ci


def wilson(k: int, n: int) -> tuple[float, float, float]:
    """Proportion k/n with its Wilson 95% interval (``evaluate.metrics.wilson_ci``); nan for n = 0."""
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    lo, hi = wilson_ci(int(k), int(n))
    return k / n, lo, hi

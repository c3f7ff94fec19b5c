"""Paired comparisons of two models scored on the same hold-out cases.

Accuracy: ``metrics.paired_accuracy_difference`` (paired bootstrap CI + exact McNemar).
Macro AUC: a paired percentile bootstrap of the difference of one-vs-rest macro AUCs
(neither scikit-learn nor statsmodels has a paired multi-class AUC comparison; DeLong in
``ml.evaluate.compare`` covers two classes).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mskstudio.ml.evaluate.compare import paired_bootstrap
from mskstudio.ml.evaluate.metrics import _fast_auc, paired_accuracy_difference


def macro_auc(y: np.ndarray, probs: np.ndarray) -> float:
    vals = [_fast_auc((y == j).astype(int), probs[:, j]) for j in range(probs.shape[1])]
    vals = [v for v in vals if not math.isnan(v)]
    return float(np.mean(vals)) if vals else math.nan


def paired_auc_difference(y_true, probs_a, probs_b, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Macro AUC of B minus A on the same cases, with a paired bootstrap 95% CI (the
    evaluation's ``paired_bootstrap`` with the macro AUC as its metric)."""
    y = np.asarray(y_true, int)
    a, b = np.asarray(probs_a, float), np.asarray(probs_b, float)
    if len(y) < 2 or a.shape != b.shape:
        return {"value": math.nan, "ci": [math.nan, math.nan], "n": len(y)}
    return paired_bootstrap(y, a, b, macro_auc, n_boot=n_boot, seed=seed)


def paired(y_true, probs_a, probs_b, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """B minus A: accuracy (bootstrap CI, McNemar p) and macro AUC (bootstrap CI)."""
    y = np.asarray(y_true, int)
    a, b = np.asarray(probs_a, float), np.asarray(probs_b, float)
    acc = paired_accuracy_difference(a.argmax(1) == y, b.argmax(1) == y, n_boot=max(n_boot, 1000), seed=seed)
    return {"accuracy": acc, "macro_auc": paired_auc_difference(y, a, b, n_boot=n_boot, seed=seed)}

"""Classification metrics with 95% confidence intervals, always with their n.

* ``wilson_ci(k, n)``: Wilson score interval for a proportion (statsmodels), the app's only one.
* ``classification_report(y_true, probs, class_names)``: accuracy, top-2 accuracy,
  per-class sensitivity / specificity / PPV / NPV / F1 (Wilson CIs) and one-vs-rest
  ROC AUC (percentile bootstrap CI), macro averages, confusion matrix (rows = truth).
* ``cascade_probs`` / ``cascade_report``: a two-stage cascade (healthy vs
  pathological, then among pathological) scored as one classifier.

Every number is a plain float/int so the result is JSON for ``model_runs.metrics``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

Z95 = 1.959963984540054


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of [N, C] logits (shifted by the row maximum for stability)."""
    z = logits - logits.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def wilson_ci(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials ((nan, nan) when n = 0).

    The one Wilson interval of the app (the reader-study analyses use it too): statsmodels'
    ``proportion_confint``, imported here because statsmodels takes seconds to import."""
    if n <= 0:
        return (math.nan, math.nan)
    from scipy.stats import norm
    from statsmodels.stats.proportion import proportion_confint

    alpha = 0.05 if z == Z95 else float(2 * norm.sf(z))  # statsmodels takes alpha, not z
    lo, hi = proportion_confint(int(k), int(n), alpha=alpha, method="wilson")
    return (max(0.0, float(lo)), min(1.0, float(hi)))


def proportion(k: int, n: int) -> dict[str, Any]:
    lo, hi = wilson_ci(int(k), int(n))
    return {"value": (k / n) if n else math.nan, "ci": [lo, hi], "k": int(k), "n": int(n)}


def _auc(y_bin: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if y_bin.min() == y_bin.max():
        return math.nan
    return float(roc_auc_score(y_bin, score))


def _fast_auc(y_bin: np.ndarray, score: np.ndarray) -> float:
    """Mann-Whitney AUC (ties count half), equal to roc_auc_score, without its validation cost."""
    from scipy.stats import rankdata

    n_pos = int(y_bin.sum())
    n_neg = len(y_bin) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(score)
    return float((ranks[y_bin.astype(bool)].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


MAX_PAIRS = 4_000_000  # positives x negatives above which the pairwise form would use too much memory


def _boot_aucs_pairwise(yb: np.ndarray, score: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """AUC of every bootstrap resample at once, from how often each case was drawn.

    The AUC of a resample is Σ_ij c_i ψ_ij c_j / (Σ c_i · Σ c_j) over positive i and
    negative j, with ψ the Mann-Whitney kernel (1 above, ½ tied): the same figure as
    ranking the resample (``_fast_auc``), without a sort per resample.
    """
    pos, neg = score[yb], score[~yb]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    cp, cn = counts[:, yb], counts[:, ~yb]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.einsum("bi,bi->b", cp @ psi, cn) / (cp.sum(1) * cn.sum(1))


def bootstrap_auc(y_true: np.ndarray, probs: np.ndarray, n_boot: int = 500, seed: int = 0,
                  alpha: float = 0.05) -> dict[str, Any]:
    """One-vs-rest AUC per class and macro, each with a percentile bootstrap CI."""
    rng = np.random.default_rng(seed)
    n, c = probs.shape
    point = [_auc((y_true == j).astype(int), probs[:, j]) for j in range(c)]
    boots = np.full((n_boot, c), np.nan)
    # The resamples drawn in one call are the same stream as n_boot calls of n draws.
    idx = rng.integers(0, n, (n_boot, n)) if n_boot and n else np.zeros((n_boot, 0), int)
    counts = np.bincount((np.arange(n_boot)[:, None] * n + idx).ravel(),
                         minlength=n_boot * n).reshape(n_boot, n).astype(float)
    for j in range(c):
        yb = y_true == j
        n_pos = int(yb.sum())
        if n_pos == 0 or n_pos == n:
            continue
        if n_pos * (n - n_pos) <= MAX_PAIRS:
            boots[:, j] = _boot_aucs_pairwise(yb, probs[:, j].astype(float), counts)
        else:
            for b in range(n_boot):
                ybb = yb[idx[b]]
                if ybb.any() and not ybb.all():
                    boots[b, j] = _fast_auc(ybb, probs[idx[b], j])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan rows
        macro_boot = np.nanmean(boots, axis=1) if c else np.zeros(0)

    def ci(values):
        values = values[~np.isnan(values)]
        if len(values) < 10:
            return [math.nan, math.nan]
        return [float(np.quantile(values, alpha / 2)), float(np.quantile(values, 1 - alpha / 2))]

    valid = [p for p in point if not math.isnan(p)]
    with np.errstate(all="ignore"):
        return {
            "per_class": [{"value": point[j], "ci": ci(boots[:, j]),
                           "n_pos": int((y_true == j).sum()), "n": int(n)} for j in range(c)],
            "macro": {"value": float(np.mean(valid)) if valid else math.nan,
                      "ci": ci(macro_boot), "n": int(n)},
        }


def classification_report(y_true: Sequence[int], probs: np.ndarray, class_names: Sequence[str], *,
                          y_pred: Sequence[int] | None = None, n_boot: int = 500,
                          seed: int = 0) -> dict[str, Any]:
    """Every figure the dashboard shows, from true class indices and class probabilities.

    ``y_pred`` overrides argmax (a cascade decides differently); ``n_boot = 0`` skips
    the bootstrap (AUC CIs are then nan).
    """
    from sklearn.metrics import confusion_matrix, f1_score

    y = np.asarray(y_true, int)
    probs = np.asarray(probs, float)
    c = len(class_names)
    if probs.shape != (len(y), c):
        raise ValueError(f"probs shape {probs.shape} does not match {len(y)} cases x {c} classes")
    pred = np.asarray(y_pred, int) if y_pred is not None else probs.argmax(1)
    n = len(y)
    cm = confusion_matrix(y, pred, labels=list(range(c)))
    top2 = np.argsort(-probs, axis=1)[:, :2] if c >= 2 else pred[:, None]
    top2_hits = int(sum(y[i] in top2[i] for i in range(n)))
    f1s = f1_score(y, pred, labels=list(range(c)), average=None, zero_division=0)
    per_class = {}
    for j, name in enumerate(class_names):
        tp = int(cm[j, j])
        fn = int(cm[j].sum() - tp)
        fp = int(cm[:, j].sum() - tp)
        tn = int(n - tp - fn - fp)
        per_class[name] = {
            "support": tp + fn,
            "sensitivity": proportion(tp, tp + fn),
            "specificity": proportion(tn, tn + fp),
            "ppv": proportion(tp, tp + fp),
            "npv": proportion(tn, tn + fn),
            "f1": float(f1s[j]),
        }
    if n_boot and n >= 2:
        aucs = bootstrap_auc(y, probs, n_boot=n_boot, seed=seed)
    else:
        aucs = {"per_class": [{"value": _auc((y == j).astype(int), probs[:, j]) if n >= 2 else math.nan,
                               "ci": [math.nan, math.nan], "n_pos": int((y == j).sum()), "n": n}
                              for j in range(c)],
                "macro": {"value": math.nan, "ci": [math.nan, math.nan], "n": n}}
        valid = [a["value"] for a in aucs["per_class"] if not math.isnan(a["value"])]
        aucs["macro"]["value"] = float(np.mean(valid)) if valid else math.nan
    for j, name in enumerate(class_names):
        per_class[name]["auc"] = aucs["per_class"][j]
    present = [name for name in class_names if per_class[name]["support"] > 0]

    def macro(key):
        vals = [per_class[nm][key]["value"] for nm in present]
        vals = [v for v in vals if not math.isnan(v)]
        return float(np.mean(vals)) if vals else math.nan

    return {
        "n": n,
        "classes": list(class_names),
        "accuracy": proportion(int((pred == y).sum()), n),
        "top2_accuracy": proportion(top2_hits, n),
        "per_class": per_class,
        "macro": {"sensitivity": macro("sensitivity"), "specificity": macro("specificity"),
                  "ppv": macro("ppv"), "npv": macro("npv"),
                  "f1": float(np.mean([per_class[nm]["f1"] for nm in present])) if present else math.nan,
                  "auc": aucs["macro"], "n_classes": len(present)},
        "confusion": cm.astype(int).tolist(),
        "majority_rate": float(np.bincount(y, minlength=c).max() / n) if n else math.nan,
    }


def paired_accuracy_difference(correct_a: Sequence[bool], correct_b: Sequence[bool], *,
                               n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """B's accuracy minus A's on the same cases: paired bootstrap 95% CI and exact McNemar p.

    Two models scored on one hold-out are not independent samples; comparing their
    separate Wilson intervals overstates the uncertainty of the difference.  McNemar's
    test uses only the discordant cases (right in one, wrong in the other).
    """
    from scipy.stats import binomtest

    a = np.asarray(correct_a, bool)
    b = np.asarray(correct_b, bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("both runs must be scored on the same cases")
    n = len(a)
    if n == 0:
        return {"value": math.nan, "ci": [math.nan, math.nan], "n": 0, "b_only": 0, "a_only": 0,
                "p_mcnemar": math.nan}
    diff = b.astype(float) - a.astype(float)
    rng = np.random.default_rng(seed)
    boots = diff[rng.integers(0, n, (n_boot, n))].mean(1)
    b_only, a_only = int((b & ~a).sum()), int((a & ~b).sum())
    p = binomtest(b_only, b_only + a_only, 0.5).pvalue if b_only + a_only else 1.0
    return {"value": float(diff.mean()), "ci": [float(np.quantile(boots, 0.025)),
                                                 float(np.quantile(boots, 0.975))],
            "n": n, "b_only": b_only, "a_only": a_only, "p_mcnemar": float(p)}


# ---- cascade -----------------------------------------------------------------------------
def cascade_probs(p_pathological: np.ndarray, sub_probs: np.ndarray) -> np.ndarray:
    """Combined probabilities over [healthy, *sub classes]: P(h) = 1 - p, P(c) = p * P(c | path)."""
    p = np.asarray(p_pathological, float)[:, None]
    return np.concatenate([1.0 - p, p * np.asarray(sub_probs, float)], axis=1)


def cascade_predict(p_pathological: np.ndarray, sub_probs: np.ndarray,
                    threshold: float = 0.5) -> np.ndarray:
    """Stage 1 decides healthy (index 0) below ``threshold``; stage 2 picks among the rest (1 + j)."""
    p = np.asarray(p_pathological, float)
    return np.where(p < threshold, 0, 1 + np.asarray(sub_probs).argmax(1))


def cascade_report(y_true: Sequence[int], p_pathological: np.ndarray, sub_probs: np.ndarray,
                   healthy_name: str, sub_names: Sequence[str], *, threshold: float = 0.5,
                   n_boot: int = 500, seed: int = 0) -> dict[str, Any]:
    """Score the cascade end to end; ``y_true`` indexes [healthy, *sub_names] (0 = healthy).

    Also reports stage 1 alone (healthy vs pathological) so the two errors can be told apart.
    """
    y = np.asarray(y_true, int)
    combined = cascade_probs(p_pathological, sub_probs)
    pred = cascade_predict(p_pathological, sub_probs, threshold)
    report = classification_report(y, combined, [healthy_name, *sub_names], y_pred=pred,
                                   n_boot=n_boot, seed=seed)
    p = np.asarray(p_pathological, float)
    stage1 = np.stack([1 - p, p], 1)
    report["stage1"] = classification_report(
        (y > 0).astype(int), stage1, [healthy_name, "pathological"],
        y_pred=(p >= threshold).astype(int), n_boot=n_boot, seed=seed)
    report["threshold"] = float(threshold)
    return report

"""Tests between models scored on the same cases: DeLong, McNemar, paired bootstrap, Holm.

* ``delong(y, *scores)``: AUCs of several scores on one binary truth with their
  DeLong covariance (fast midrank algorithm of Sun & Xu 2014).  No maintained
  Python library ships DeLong's test (scikit-learn, scipy and statsmodels do not),
  so it is written here and checked in the tests against the O(n²) Mann-Whitney
  kernel form of DeLong, DeLong & Clarke-Pearson (1988).
* ``delong_test(y, a, b)``: the paired AUC difference, its 95% CI and two-sided p.
* ``auc_ci(y, s)``: one AUC with its DeLong 95% CI (no bootstrap: fast for subgroups).
* ``mcnemar(correct_a, correct_b)``: exact McNemar (statsmodels) on the discordant pairs.
* ``paired_bootstrap(y, a, b, metric)``: any metric's paired difference, percentile CI.
* ``holm(pvalues)``: Holm-adjusted p-values (statsmodels ``multipletests``).

Every result is a plain dict of floats/ints (JSON for the report).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mskstudio.ml.evaluate.metrics import Z95


def _midrank(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their mean rank (= scipy.stats.rankdata 'average')."""
    from scipy.stats import rankdata

    return rankdata(x, method="average")


def delong(y_true: Sequence[int], *scores: Sequence[float]) -> dict[str, Any]:
    """AUCs and their DeLong covariance matrix for ``scores`` against binary ``y_true``.

    Sun & Xu (2014): with m positives X and n negatives Y, the structural components are
    V10(X_i) = (rank of X_i among all − rank among positives) / n and
    V01(Y_j) = 1 − (rank of Y_j among all − rank among negatives) / m; the covariance of
    the AUCs is cov(V10)/m + cov(V01)/n.  O((m + n) log(m + n)) per score.
    """
    y = np.asarray(y_true).astype(bool)
    s = np.atleast_2d(np.asarray(scores, float))
    m, n = int(y.sum()), int((~y).sum())
    k = s.shape[0]
    if m < 2 or n < 2:
        nan = np.full(k, math.nan)
        return {"auc": nan, "cov": np.full((k, k), math.nan), "n_pos": m, "n_neg": n}
    pos, neg = s[:, y], s[:, ~y]
    v10 = np.empty((k, m))
    v01 = np.empty((k, n))
    aucs = np.empty(k)
    for r in range(k):
        tz = _midrank(s[r])
        tx, ty = _midrank(pos[r]), _midrank(neg[r])
        tz_pos, tz_neg = tz[y], tz[~y]
        aucs[r] = (tz_pos.sum() / m - (m + 1) / 2) / n
        v10[r] = (tz_pos - tx) / n
        v01[r] = 1.0 - (tz_neg - ty) / m
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return {"auc": aucs, "cov": cov, "n_pos": m, "n_neg": n}


def auc_ci(y_true: Sequence[int], score: Sequence[float]) -> dict[str, Any]:
    """One AUC with its DeLong 95% CI (clipped to [0, 1]) and n."""
    d = delong(y_true, score)
    auc, var = float(d["auc"][0]), float(d["cov"][0, 0])
    if math.isnan(auc):
        return {"value": math.nan, "ci": [math.nan, math.nan], "n": d["n_pos"] + d["n_neg"],
                "n_pos": d["n_pos"]}
    half = Z95 * math.sqrt(max(var, 0.0))
    return {"value": auc, "ci": [max(0.0, auc - half), min(1.0, auc + half)],
            "n": d["n_pos"] + d["n_neg"], "n_pos": d["n_pos"]}


def delong_test(y_true: Sequence[int], score_a: Sequence[float], score_b: Sequence[float]) -> dict[str, Any]:
    """DeLong's test of AUC(B) − AUC(A) on the same cases: difference, 95% CI, z, two-sided p."""
    from scipy.stats import norm

    d = delong(y_true, score_a, score_b)
    a, b = (float(v) for v in d["auc"])
    out = {"auc_a": a, "auc_b": b, "n": d["n_pos"] + d["n_neg"], "n_pos": d["n_pos"]}
    if math.isnan(a):
        return {**out, "diff": math.nan, "ci": [math.nan, math.nan], "z": math.nan, "p": math.nan}
    c = d["cov"]
    var = float(c[0, 0] + c[1, 1] - 2 * c[0, 1])
    diff = b - a
    if var <= 1e-15:  # identical rankings: no evidence of a difference
        return {**out, "diff": diff, "ci": [diff, diff], "z": 0.0, "p": 1.0}
    se = math.sqrt(var)
    z = diff / se
    return {**out, "diff": diff, "ci": [diff - Z95 * se, diff + Z95 * se], "z": z,
            "p": float(2 * norm.sf(abs(z)))}


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict[str, Any]:
    """Exact McNemar test (statsmodels) on right/wrong of two models on the same cases."""
    from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar

    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    if a.shape != b.shape:
        raise ValueError("both models must be scored on the same cases")
    table = [[int((a & b).sum()), int((a & ~b).sum())], [int((~a & b).sum()), int((~a & ~b).sum())]]
    discordant = table[0][1] + table[1][0]
    p = float(sm_mcnemar(table, exact=True).pvalue) if discordant else 1.0
    return {"table": table, "a_only": table[0][1], "b_only": table[1][0], "n": int(len(a)), "p": p}


def paired_bootstrap(y_true: Sequence[int], pred_a: np.ndarray, pred_b: np.ndarray,
                     metric: Callable[[np.ndarray, np.ndarray], float], *, n_boot: int = 1000,
                     seed: int = 0) -> dict[str, Any]:
    """metric(B) − metric(A) with a percentile CI from resampling cases (the same draw for both).

    ``pred_a``/``pred_b`` are whatever ``metric(y, pred)`` takes (labels, scores or
    probability rows); a resample where the metric is undefined (nan) is dropped.  The
    p-value is the two-sided bootstrap p: twice the share of resampled differences on
    the other side of zero.
    """
    y = np.asarray(y_true)
    pa, pb = np.asarray(pred_a), np.asarray(pred_b)
    if len(pa) != len(y) or len(pb) != len(y):
        raise ValueError("both models must be scored on the same cases")
    n = len(y)
    point = float(metric(y, pb) - metric(y, pa))
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        v = metric(y[idx], pb[idx]) - metric(y[idx], pa[idx])
        if not math.isnan(v):
            diffs.append(v)
    if len(diffs) < 10:
        return {"value": point, "ci": [math.nan, math.nan], "p": math.nan, "n": n, "n_boot": len(diffs)}
    diffs_ = np.asarray(diffs)
    p = min(1.0, 2 * min((diffs_ <= 0).mean(), (diffs_ >= 0).mean()))
    return {"value": point, "ci": [float(np.quantile(diffs_, 0.025)), float(np.quantile(diffs_, 0.975))],
            "p": float(p), "n": n, "n_boot": len(diffs)}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (statsmodels); nan stays nan."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, float)
    out = np.full(len(p), math.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return [float(v) for v in out]


def compare_runs(y_true: Sequence[int], probs_a: np.ndarray, probs_b: np.ndarray,
                 classes: Sequence[str]) -> dict[str, Any]:
    """Every paired test between two runs on the same cases (A = reference, B − A).

    Binary: DeLong on the positive class (index 1).  More classes: one-vs-rest DeLong
    per class with Holm-adjusted p-values (several tests shown at once inflate the
    chance that one is "significant").  Plus McNemar on argmax correctness.
    """
    y = np.asarray(y_true, int)
    pa, pb = np.asarray(probs_a, float), np.asarray(probs_b, float)
    c = len(classes)
    targets = [1] if c == 2 else list(range(c))
    aucs = []
    for j in targets:
        t = delong_test((y == j).astype(int), pa[:, j], pb[:, j])
        aucs.append({"class": classes[j], **t})
    adjusted = holm([t["p"] for t in aucs]) if len(aucs) > 1 else [t["p"] for t in aucs]
    for t, q in zip(aucs, adjusted, strict=True):
        t["p_holm"] = q
    return {"n": int(len(y)), "auc": aucs,
            "mcnemar": mcnemar(pa.argmax(1) == y, pb.argmax(1) == y),
            "multiple": len(aucs) > 1}

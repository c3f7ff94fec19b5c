"""Tests between models: DeLong against a second (O(n²) kernel) implementation and
scikit-learn's AUC; McNemar against scipy's binomial test; the paired bootstrap against
scipy.stats.bootstrap; Holm against a hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest, bootstrap, norm
from sklearn.metrics import accuracy_score, roc_auc_score

from mskstudio.ml.evaluate import compare as cmp


def _kernel_delong(y, a, b):
    """DeLong, DeLong & Clarke-Pearson (1988) from the Mann-Whitney kernel, O(m·n)."""
    y = np.asarray(y, bool)

    def components(s):
        x, z = s[y][:, None], s[~y][None, :]
        psi = (x > z) + 0.5 * (x == z)
        return psi.mean(), psi.mean(1), psi.mean(0)  # AUC, V10 (per positive), V01 (per negative)

    auc_a, v10a, v01a = components(np.asarray(a, float))
    auc_b, v10b, v01b = components(np.asarray(b, float))
    m, n = y.sum(), (~y).sum()
    s10 = np.cov(np.vstack([v10a, v10b]))
    s01 = np.cov(np.vstack([v01a, v01b]))
    cov = s10 / m + s01 / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    z = (auc_b - auc_a) / math.sqrt(var)
    return auc_a, auc_b, cov, z, 2 * norm.sf(abs(z))


def _scores(n=120, seed=3, ties=False):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    a = y * 0.8 + rng.normal(0, 1, n)
    b = y * 1.4 + 0.5 * a + rng.normal(0, 1, n)  # correlated with a, better
    if ties:
        a, b = np.round(a, 1), np.round(b, 1)
    return y, a, b


@pytest.mark.parametrize("ties", [False, True])
def test_fast_delong_equals_the_kernel_form_and_scikit_learn(ties):
    y, a, b = _scores(ties=ties)
    t = cmp.delong_test(y, a, b)
    auc_a, auc_b, cov, z, p = _kernel_delong(y, a, b)
    assert t["auc_a"] == pytest.approx(roc_auc_score(y, a)) == pytest.approx(auc_a)
    assert t["auc_b"] == pytest.approx(roc_auc_score(y, b)) == pytest.approx(auc_b)
    assert cmp.delong(y, a, b)["cov"] == pytest.approx(cov)
    assert t["z"] == pytest.approx(z) and t["p"] == pytest.approx(p)
    assert t["ci"][0] < t["diff"] < t["ci"][1]
    assert t["p"] < 0.05  # b was built better: the test must see it at n = 120


def test_delong_on_a_hand_computed_case():
    # 2 positives (0.9, 0.4), 2 negatives (0.5, 0.1): pairs 0.9>0.5, 0.9>0.1, 0.4<0.5, 0.4>0.1 -> AUC 3/4.
    # V10 = (1, 1/2), V01 = (1/2, 1); var = var(V10)/2 + var(V01)/2 = (1/8)/2 + (1/8)/2 = 1/8.
    d = cmp.delong([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1])
    assert d["auc"][0] == pytest.approx(0.75)
    assert d["cov"][0, 0] == pytest.approx(1 / 8)
    ci = cmp.auc_ci([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1])
    assert ci["ci"] == pytest.approx([max(0, 0.75 - 1.959964 * math.sqrt(1 / 8)), 1.0])


def test_delong_of_identical_scores_and_of_one_class():
    y, a, _b = _scores()
    same = cmp.delong_test(y, a, a)
    assert same["diff"] == 0 and same["p"] == 1.0
    one = cmp.delong_test([1, 1, 1], [0.2, 0.3, 0.4], [0.1, 0.1, 0.5])
    assert math.isnan(one["p"])


def test_mcnemar_matches_the_exact_binomial_test():
    a = np.array([1] * 25 + [0] * 5 + [0] * 8 + [1] * 2, bool)
    b = np.array([1] * 25 + [0] * 5 + [1] * 8 + [0] * 2, bool)
    r = cmp.mcnemar(a, b)
    assert (r["b_only"], r["a_only"], r["n"]) == (8, 2, 40)
    assert r["p"] == pytest.approx(binomtest(2, 10, 0.5).pvalue)
    assert cmp.mcnemar(a, a)["p"] == 1.0


def test_paired_bootstrap_agrees_with_scipy():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    pa = np.where(rng.random(300) < 0.7, y, 1 - y)
    pb = np.where(rng.random(300) < 0.8, y, 1 - y)
    def acc(yy, p):
        return float(np.mean(yy == p))

    r = cmp.paired_bootstrap(y, pa, pb, acc, n_boot=2000, seed=0)
    assert r["value"] == pytest.approx(accuracy_score(y, pb) - accuracy_score(y, pa))
    ref = bootstrap((y, pa, pb), lambda yy, a, b, axis: np.mean(b == yy, axis) - np.mean(a == yy, axis),
                    paired=True, vectorized=True, n_resamples=2000, method="percentile",
                    rng=np.random.default_rng(5)).confidence_interval
    # two independent Monte Carlo runs: the limits agree to Monte Carlo error
    assert r["ci"][0] == pytest.approx(ref.low, abs=0.015)
    assert r["ci"][1] == pytest.approx(ref.high, abs=0.015)
    # AUC as the metric: the bootstrap CI and DeLong's CI describe the same difference
    sa, sb = pa + rng.normal(0, 0.5, 300), pb + rng.normal(0, 0.5, 300)
    from mskstudio.ml.evaluate.metrics import _fast_auc  # = roc_auc_score, without its checks

    boot = cmp.paired_bootstrap(y, sa, sb, _fast_auc, n_boot=500)
    dl = cmp.delong_test(y, sa, sb)
    assert boot["value"] == pytest.approx(dl["diff"])
    assert boot["ci"][0] == pytest.approx(dl["ci"][0], abs=0.03)
    assert boot["ci"][1] == pytest.approx(dl["ci"][1], abs=0.03)


def test_holm_by_hand():
    # sorted p 0.01, 0.02, 0.04 times 3, 2, 1 -> 0.03, 0.04, 0.04 (monotone), back in input order
    assert cmp.holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert math.isnan(cmp.holm([math.nan, 0.01])[0])


def test_compare_runs_multiclass_adds_holm():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    pa = rng.dirichlet([1, 1, 1], 90)
    pb = pa.copy()
    pb[np.arange(90), y] += 0.5
    pb /= pb.sum(1, keepdims=True)
    r = cmp.compare_runs(y, pa, pb, ["a", "b", "c"])
    assert r["multiple"] and len(r["auc"]) == 3
    for t in r["auc"]:
        assert t["p_holm"] >= t["p"]
    assert r["mcnemar"]["n"] == 90
    binary = cmp.compare_runs((y == 1).astype(int), pa[:, :2] / pa[:, :2].sum(1, keepdims=True),
                              pb[:, :2] / pb[:, :2].sum(1, keepdims=True), ["no", "yes"])
    assert len(binary["auc"]) == 1 and binary["auc"][0]["class"] == "yes"


def test_dashboard_comparison_shows_delong_for_the_same_cases():
    from mskstudio.ml.evaluate import dashboard_figures as dd
    from mskstudio.ml.evaluate import metrics as ev

    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 60)
    pa = rng.dirichlet([1, 1, 1], 60)
    pb = pa.copy()
    pb[np.arange(60), y] += 0.6
    pb /= pb.sum(1, keepdims=True)
    names = ["a", "b", "c"]

    def metrics(probs):
        rep = ev.classification_report(y, probs, names, n_boot=0)
        return {"holdout": {**rep, "image_ids": list(range(60)), "y_true": y.tolist(),
                            "probs": probs.tolist()}, "classes": names}

    rows = dd.comparison_rows([("A", metrics(pa), {}), ("B", metrics(pb), {})])
    delong_rows = [r for r in rows if "(DeLong)" in r[0]]
    assert len(delong_rows) == 3 and "Holm p" in delong_rows[0][2]
    t = cmp.delong_test((y == 0).astype(int), pa[:, 0], pb[:, 0])
    assert delong_rows[0][2].startswith(f"{t['diff']:+.3f}")
    assert rows[-1][0] == "note"

"""Metrics against scikit-learn and hand computations; the cascade on hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    top_k_accuracy_score,
)

from mskstudio.ml.evaluate import metrics as ev


def test_wilson_matches_a_hand_computation():
    # 8 of 10, z = 1.96: centre (0.8 + 1.96²/20) / (1 + 1.96²/10),
    # half-width 1.96 * sqrt(0.8*0.2/10 + 1.96²/400) / (1 + 1.96²/10)
    z = 1.96
    centre = (0.8 + z * z / 20) / (1 + z * z / 10)
    half = z * math.sqrt(0.016 + z * z / 400) / (1 + z * z / 10)
    lo, hi = ev.wilson_ci(8, 10, z=1.96)
    assert lo == pytest.approx(centre - half) and hi == pytest.approx(centre + half)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    assert ev.wilson_ci(0, 5)[0] == 0.0 and ev.wilson_ci(5, 5)[1] == pytest.approx(1.0)
    assert all(math.isnan(v) for v in ev.wilson_ci(0, 0))



@pytest.mark.parametrize("k, n", [(0, 5), (1, 3), (8, 10), (5, 5), (37, 120)])
def test_one_wilson_interval_serves_evaluation_and_reader_studies(k, n):
    from statsmodels.stats.proportion import proportion_confint

    from mskstudio.ml.readers.intervals import wilson

    expected = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert ev.wilson_ci(k, n) == pytest.approx(expected, abs=1e-12)
    assert wilson(k, n) == pytest.approx((k / n, *expected), abs=1e-12)
    # another z is another alpha: 1.6449 is the 90% interval
    assert ev.wilson_ci(k, n, z=1.6448536269514722) == pytest.approx(
        proportion_confint(k, n, alpha=0.10, method="wilson"), abs=1e-12)

def _cases():
    rng = np.random.default_rng(0)
    y = np.array([0] * 12 + [1] * 9 + [2] * 6)
    logits = rng.normal(0, 1, (len(y), 3))
    logits[np.arange(len(y)), y] += 1.2
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return y, probs


def test_report_matches_scikit_learn():
    y, probs = _cases()
    names = ["a", "b", "c"]
    rep = ev.classification_report(y, probs, names, n_boot=200)
    pred = probs.argmax(1)
    assert rep["n"] == len(y)
    assert rep["accuracy"]["value"] == pytest.approx(accuracy_score(y, pred))
    assert rep["accuracy"]["n"] == len(y)
    assert rep["top2_accuracy"]["value"] == pytest.approx(top_k_accuracy_score(y, probs, k=2))
    assert rep["confusion"] == confusion_matrix(y, pred).tolist()
    sens = recall_score(y, pred, average=None)
    ppv = precision_score(y, pred, average=None, zero_division=0)
    f1 = f1_score(y, pred, average=None)
    for j, name in enumerate(names):
        c = rep["per_class"][name]
        assert c["sensitivity"]["value"] == pytest.approx(sens[j])
        assert c["ppv"]["value"] == pytest.approx(ppv[j])
        assert c["f1"] == pytest.approx(f1[j])
        # specificity = recall of "not j"
        assert c["specificity"]["value"] == pytest.approx(recall_score(y != j, pred != j))
        assert c["npv"]["value"] == pytest.approx(precision_score(y != j, pred != j))
        assert c["auc"]["value"] == pytest.approx(roc_auc_score(y == j, probs[:, j]))
        lo, hi = c["auc"]["ci"]
        assert lo <= c["auc"]["value"] <= hi
        assert c["support"] == int((y == j).sum())
    assert rep["macro"]["auc"]["value"] == pytest.approx(
        roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert rep["macro"]["sensitivity"] == pytest.approx(sens.mean())
    assert rep["majority_rate"] == pytest.approx(12 / 27)


def test_fast_auc_equals_scikit_learn_with_ties():
    y = np.array([0, 0, 1, 1, 0, 1, 1, 0])
    s = np.array([0.1, 0.4, 0.4, 0.8, 0.4, 0.9, 0.2, 0.2])
    assert ev._fast_auc(y, s) == pytest.approx(roc_auc_score(y, s))


def test_cascade_on_hand_made_cases():
    # classes [healthy, tumour, fracture]
    p_path = np.array([0.1, 0.2, 0.9, 0.8, 0.7, 0.6])
    sub = np.array([[0.5, 0.5], [0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6], [0.9, 0.1]])
    y = np.array([0, 1, 1, 2, 1, 0])
    pred = ev.cascade_predict(p_path, sub, threshold=0.5)
    assert pred.tolist() == [0, 0, 1, 2, 2, 1]
    combined = ev.cascade_probs(p_path, sub)
    assert combined.sum(1) == pytest.approx(np.ones(6))
    assert combined[2].tolist() == pytest.approx([0.1, 0.72, 0.18])
    rep = ev.cascade_report(y, p_path, sub, "healthy", ["tumour", "fracture"], n_boot=0)
    assert rep["accuracy"]["k"] == 3 and rep["accuracy"]["n"] == 6
    assert rep["confusion"] == [[1, 1, 0], [1, 1, 1], [0, 0, 1]]
    # stage 1: healthy vs pathological decided at 0.5
    assert rep["stage1"]["confusion"] == [[1, 1], [1, 3]]
    # a stricter first stage sends case 5 (p = 0.6) to healthy: now correct
    assert ev.cascade_report(y, p_path, sub, "healthy", ["tumour", "fracture"], threshold=0.65,
                             n_boot=0)["accuracy"]["k"] == 4


def test_paired_accuracy_difference_on_hand_made_cases():
    # 40 cases: both right on 25, both wrong on 5, only B right on 8, only A right on 2.
    a = np.array([1] * 25 + [0] * 5 + [0] * 8 + [1] * 2, bool)
    b = np.array([1] * 25 + [0] * 5 + [1] * 8 + [0] * 2, bool)
    d = ev.paired_accuracy_difference(a, b)
    assert d["value"] == pytest.approx((8 - 2) / 40)
    assert (d["b_only"], d["a_only"], d["n"]) == (8, 2, 40)
    # exact two-sided McNemar: 2 * P(X <= 2), X ~ Binomial(10, 1/2)
    assert d["p_mcnemar"] == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert d["ci"][0] < d["value"] < d["ci"][1]
    same = ev.paired_accuracy_difference(a, a)
    assert same["value"] == 0 and same["p_mcnemar"] == 1.0 and same["ci"] == [0.0, 0.0]
    with pytest.raises(ValueError):
        ev.paired_accuracy_difference(a, b[:-1])


def test_run_comparison_adds_the_paired_difference_only_for_the_same_cases():
    from mskstudio.ml.evaluate import dashboard_figures as dd

    y = [0, 1, 1, 0, 1]
    probs_a = [[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.7, 0.3]]  # 3 of 5 right
    probs_b = [[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]]  # 5 of 5 right

    def metrics(probs, ids):
        rep = ev.classification_report(y, np.array(probs), ["a", "b"], n_boot=0)
        return {"holdout": {**rep, "image_ids": ids, "y_true": y, "probs": probs}, "classes": ["a", "b"]}

    ids = [10, 11, 12, 13, 14]
    rows = dd.comparison_rows([("A", metrics(probs_a, ids), {}), ("B", metrics(probs_b, ids), {})])
    paired = [r for r in rows if r[0].startswith("B − A accuracy")]
    assert len(paired) == 1 and paired[0][2].startswith("+0.400")
    assert any("(DeLong)" in r[0] for r in rows)  # the AUC test follows the accuracy one
    other = dd.comparison_rows([("A", metrics(probs_a, ids), {}), ("B", metrics(probs_b, ids[::-1]), {})])
    assert not any(r[0].startswith("B − A") for r in other)


def _loop_bootstrap_auc(y_true, probs, n_boot, seed):
    """The bootstrap as it was first written: one ranking per resample and class."""
    rng = np.random.default_rng(seed)
    n, c = probs.shape
    boots = np.full((n_boot, c), np.nan)
    for b in range(n_boot):
        idx = rng.integers(0, n, n)
        for j in range(c):
            yb = y_true[idx] == j
            if yb.any() and not yb.all():
                boots[b, j] = ev._fast_auc(yb, probs[idx, j])
    return boots


@pytest.mark.parametrize("ties", [False, True])
def test_vectorised_bootstrap_equals_the_loop(ties):
    y, probs = _cases()
    y = np.concatenate([y, [3]])  # a class with one case: most resamples lack it
    probs = np.vstack([np.hstack([probs, np.full((len(probs), 1), 0.05)]), [0.1, 0.1, 0.1, 0.7]])
    if ties:
        probs = np.round(probs, 1)
    rep = ev.bootstrap_auc(y, probs, n_boot=300, seed=4)
    boots = _loop_bootstrap_auc(y, probs, 300, 4)
    for j in range(4):
        col = boots[:, j][~np.isnan(boots[:, j])]
        expect = [np.quantile(col, 0.025), np.quantile(col, 0.975)] if len(col) >= 10 else [math.nan] * 2
        assert rep["per_class"][j]["ci"] == pytest.approx(expect, nan_ok=True)
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            macro = np.nanmean(boots, axis=1)
    assert rep["macro"]["ci"] == pytest.approx([np.quantile(macro, 0.025), np.quantile(macro, 0.975)])

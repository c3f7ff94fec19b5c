"""Calibration and operating points against scikit-learn and second implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, log_loss, roc_curve

from mskstudio.ml.evaluate import calibration as cal
from mskstudio.ml.evaluate import metrics as ev


def _overconfident(n=400, c=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    logits = rng.normal(0, 1, (n, c))
    logits[np.arange(n), y] += 1.0
    return y, ev.softmax(logits * 3.0)  # T = 3 too sharp


def test_reliability_bins_match_scikit_learn_calibration_curve():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 500)
    p1 = np.clip(0.5 * y + rng.random(500) * 0.5, 0.001, 0.999)
    probs = np.stack([1 - p1, p1], 1)
    rel = cal.reliability(y, probs, n_bins=10)
    assert sum(b["n"] for b in rel["bins"]) == 500
    # top-label binary reliability = sklearn's curve of "correct" against confidence
    conf, hit = probs.max(1), (probs.argmax(1) == y).astype(int)
    frac, mean = calibration_curve(hit, conf, n_bins=10, strategy="uniform")
    ours = [(b["accuracy"], b["confidence"]) for b in rel["bins"] if b["n"]]
    assert np.allclose([a for a, _ in ours], frac) and np.allclose([m for _, m in ours], mean)


def test_ece_equals_a_loop_implementation():
    y, probs = _overconfident()
    conf, hit = probs.max(1), (probs.argmax(1) == y)
    total = 0.0
    for lo in np.arange(10) / 10:
        sel = (conf > lo) & (conf <= lo + 0.1) if lo > 0 else (conf <= 0.1)
        if sel.any():
            total += sel.mean() * abs(hit[sel].mean() - conf[sel].mean())
    assert cal.ece(y, probs) == pytest.approx(total)
    assert cal.ece(y, probs) > 0.05  # over-confident by construction


def test_brier_is_the_mean_squared_distance_to_the_one_hot_truth():
    y, probs = _overconfident()
    onehot = np.eye(3)[y]
    assert cal.brier(y, probs) == pytest.approx(((probs - onehot) ** 2).sum(1).mean())
    yb = (y == 1).astype(int)
    p2 = np.stack([1 - probs[:, 1], probs[:, 1]], 1)
    assert cal.brier(yb, p2) == pytest.approx(((p2 - np.eye(2)[yb]) ** 2).sum(1).mean())


def test_temperature_is_the_nll_minimum_and_agrees_with_scikit_learn():
    y, probs = _overconfident()
    t = cal.fit_temperature(y, probs)
    assert 2.0 < t < 4.5  # the sharpening was 3
    grid = np.exp(np.linspace(-1, 2, 301))
    best = grid[np.argmin([log_loss(y, cal.apply_temperature(probs, g), labels=[0, 1, 2]) for g in grid])]
    assert t == pytest.approx(best, rel=0.02)
    after = cal.apply_temperature(probs, t)
    assert cal.nll(y, after) < cal.nll(y, probs)
    assert cal.ece(y, after) < cal.ece(y, probs)
    assert (after.argmax(1) == probs.argmax(1)).all()  # the ranking does not change
    calibration = pytest.importorskip("sklearn.calibration")
    if hasattr(calibration, "_TemperatureScaling"):  # scikit-learn >= 1.8, private
        beta = float(calibration._TemperatureScaling().fit(np.log(probs), y).beta_)
        assert t == pytest.approx(1 / beta, rel=1e-3)


def test_thresholds_follow_their_rule_on_the_roc_curve():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 300)
    s = np.clip(0.3 * y + rng.random(300) * 0.7, 0, 1)
    fpr, tpr, thr = roc_curve(y, s)
    t = cal.choose_threshold(y, s, "youden")
    j = cal.at_threshold(y, s, t)
    assert j["sensitivity"]["value"] + j["specificity"]["value"] - 1 == pytest.approx((tpr - fpr).max())
    t90 = cal.choose_threshold(y, s, "sensitivity", 0.9)
    r = cal.at_threshold(y, s, t90)
    assert r["sensitivity"]["value"] >= 0.9
    # the highest such threshold: one step up loses the target
    higher = np.unique(s[s > t90])
    if len(higher):
        assert cal.at_threshold(y, s, higher[0])["sensitivity"]["value"] < 0.9
    t_sp = cal.choose_threshold(y, s, "specificity", 0.8)
    assert cal.at_threshold(y, s, t_sp)["specificity"]["value"] >= 0.8
    tn, fp, fn, tp = confusion_matrix(y, (s >= t_sp).astype(int)).ravel()
    r = cal.at_threshold(y, s, t_sp)
    assert (r["tp"], r["fp"], r["fn"], r["tn"]) == (tp, fp, fn, tn)
    assert r["ppv"]["ci"] == pytest.approx(list(ev.wilson_ci(tp, tp + fp)))
    with pytest.raises(ValueError, match="target"):
        cal.choose_threshold(y, s, "sensitivity")
    with pytest.raises(ValueError, match="rule"):
        cal.choose_threshold(y, s, "magic")


def test_operating_point_fits_on_validation_and_reports_the_holdout():
    y_val, p_val = _overconfident(300, 2, seed=1)
    y_h, p_h = _overconfident(120, 2, seed=2)
    names = ["healthy", "lesion"]
    metrics = {"classes": names,
               "main": {"oof": {"classes": names, "y_true": y_val.tolist(), "probs": p_val.tolist()}},
               "holdout": {"classes": names, "y_true": y_h.tolist(), "probs": p_h.tolist()}}
    op = cal.operating_point(metrics, rule="sensitivity", target=0.9)
    assert op["positive"] == "lesion" and op["fitted_on"]["n"] == 300
    assert op["temperature"] == pytest.approx(cal.fit_temperature(y_val, p_val))
    assert op["validation"]["at_threshold"]["sensitivity"]["value"] >= 0.9
    p_h_t = cal.apply_temperature(p_h, op["temperature"])
    expect = cal.at_threshold(y_h == 1, p_h_t[:, 1], op["threshold"])
    assert op["holdout"]["at_threshold"] == expect
    assert op["holdout"]["after"]["nll"] < op["holdout"]["before"]["nll"]
    assert not math.isnan(op["holdout"]["before"]["brier"])
    with pytest.raises(ValueError, match="out-of-fold"):
        cal.operating_point({"holdout": metrics["holdout"]})


def test_apply_operating_point_decides_by_the_threshold():
    probs = np.array([[0.7, 0.2, 0.1], [0.5, 0.1, 0.4], [0.2, 0.3, 0.5], [0.1, 0.8, 0.1]])
    op = {"positive": "c", "threshold": 0.35, "temperature": 1.0}
    scaled, pred = cal.apply_operating_point(probs, ["a", "b", "c"], op)
    assert scaled == pytest.approx(probs, abs=1e-6)
    assert pred.tolist() == [0, 2, 2, 1]  # case 1: c reaches 0.35 though a is larger
    scaled, _ = cal.apply_operating_point(probs, ["a", "b", "c"], {**op, "temperature": 2.0})
    assert scaled == pytest.approx(ev.softmax(np.log(probs) / 2.0))
    with pytest.raises(ValueError, match="not one of"):
        cal.apply_operating_point(probs, ["a", "b", "x"], op)


def test_dashboard_lists_the_stored_operating_point():
    from mskstudio.ml.evaluate import dashboard_figures as dd

    y_val, p_val = _overconfident(200, 2, seed=3)
    y_h, p_h = _overconfident(80, 2, seed=4)
    names = ["no", "yes"]
    metrics = {"classes": names,
               "main": {"oof": {"classes": names, "y_true": y_val.tolist(), "probs": p_val.tolist()}},
               "holdout": {"classes": names, "y_true": y_h.tolist(), "probs": p_h.tolist(), "n": 80}}
    assert dd.operating_point_lines(metrics) == []
    metrics["operating_point"] = op = cal.operating_point(metrics, rule="specificity", target=0.9)
    rows = dict(dd.comparison_rows([("A", metrics, {})])[1:])
    assert rows["operating point P(yes) ≥"].startswith(f"{op['threshold']:.3f} (specificity")
    assert rows["  specificity at it"] == dd.fmt_prop(op["holdout"]["at_threshold"]["specificity"])

"""Calibration and operating points, fitted on validation data and reported on the hold-out.

* ``reliability(y, probs)``: reliability-diagram bins of the top-label confidence.
* ``brier(y, probs)``: multi-class Brier score (scikit-learn ``brier_score_loss``).
* ``ece(y, probs)``: expected calibration error (equal-width bins, top label).
  Written here: scikit-learn, scipy and statsmodels do not ship ECE; it is the
  bin-weighted mean |accuracy − confidence| of Guo et al. (2017), the figure the
  calibration literature reports beside the Brier score.
* ``fit_temperature(y, probs)``: one temperature T for softmax(log p / T), fitted by
  minimising the negative log-likelihood on the out-of-fold validation predictions
  (Guo et al. 2017); ``apply_temperature`` rescales hold-out probabilities with it.
* ``choose_threshold(y_bin, score, rule)``: a one-vs-rest threshold chosen on
  validation data: Youden's J, a target sensitivity or a target specificity.
* ``at_threshold(y_bin, score, t)``: sensitivity / specificity / PPV / NPV with Wilson CIs.
* ``operating_point(metrics, …)``: all of it from a run's stored ``oof`` and
  ``holdout`` reports; the result is JSON stored on the run (``metrics["operating_point"]``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from mskstudio.ml.evaluate.metrics import proportion
from mskstudio.ml.evaluate.params import RULES, OperatingPointParams

EPS = 1e-7  # stored probabilities are rounded to 5 decimals: log(0) must not happen


def _arrays(y_true, probs) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true, int)
    p = np.asarray(probs, float)
    if p.ndim != 2 or len(p) != len(y):
        raise ValueError(f"probs shape {p.shape} does not match {len(y)} cases")
    return y, p


def reliability(y_true: Sequence[int], probs: np.ndarray, n_bins: int = 10) -> dict[str, Any]:
    """Equal-width bins of the top-label confidence: count, mean confidence, accuracy per bin."""
    y, p = _arrays(y_true, probs)
    conf = p.max(1)
    hit = (p.argmax(1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right-closed bins (0, 0.1], … so a confidence of exactly 1 falls in the last one
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        sel = idx == b
        k = int(sel.sum())
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": k,
                     "confidence": float(conf[sel].mean()) if k else math.nan,
                     "accuracy": float(hit[sel].mean()) if k else math.nan})
    return {"bins": bins, "n": int(len(y))}


def ece(y_true: Sequence[int], probs: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error: Σ_b (n_b / n) |accuracy_b − confidence_b| (top label)."""
    rel = reliability(y_true, probs, n_bins)
    n = rel["n"]
    if not n:
        return math.nan
    return float(sum(b["n"] / n * abs(b["accuracy"] - b["confidence"]) for b in rel["bins"] if b["n"]))


def brier(y_true: Sequence[int], probs: np.ndarray) -> float:
    """Multi-class Brier score (mean squared distance to the one-hot truth), scikit-learn's."""
    from sklearn.metrics import brier_score_loss

    y, p = _arrays(y_true, probs)
    if not len(y):
        return math.nan
    p = p / p.sum(1, keepdims=True)  # stored probabilities are rounded: sums of 0.99999
    labels = list(range(p.shape[1]))
    if p.shape[1] == 2:
        # the binary form counts one squared error per case, the multi-class form two
        return float(brier_score_loss(y, p[:, 1], pos_label=1) * 2)
    return float(brier_score_loss(y, p, labels=labels))


def _log_probs(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(probs, EPS, 1.0))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the same ranking, sharper (T < 1) or softer (T > 1) probabilities."""
    z = _log_probs(np.asarray(probs, float)) / float(temperature)
    z -= z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def nll(y_true: Sequence[int], probs: np.ndarray) -> float:
    y, p = _arrays(y_true, probs)
    return float(-_log_probs(p)[np.arange(len(y)), y].mean())


def fit_temperature(y_true: Sequence[int], probs: np.ndarray) -> float:
    """The T minimising the validation NLL of softmax(log p / T), searched on log T ∈ [−5, 5]."""
    from scipy.optimize import minimize_scalar

    y, p = _arrays(y_true, probs)
    if len(y) < 2:
        return 1.0
    res = minimize_scalar(lambda log_t: nll(y, apply_temperature(p, math.exp(log_t))),
                          bounds=(-5.0, 5.0), method="bounded", options={"xatol": 1e-6})
    return float(math.exp(res.x))


def choose_threshold(y_bin: Sequence[int], score: Sequence[float], rule: str = "youden",
                     target: float | None = None) -> float:
    """A decision threshold (positive when score ≥ t) chosen on validation data.

    youden: maximises sensitivity + specificity − 1; sensitivity: the highest threshold
    whose sensitivity reaches ``target``; specificity: the lowest threshold whose
    specificity reaches ``target`` (the most sensitive point that keeps it).
    """
    from sklearn.metrics import roc_curve

    y = np.asarray(y_bin, int)
    s = np.asarray(score, float)
    if rule not in RULES:
        raise ValueError(f"operating point rule must be one of {', '.join(RULES)}, not {rule!r}")
    if rule != "youden" and (target is None or not 0 < float(target) <= 1):
        raise ValueError(f"rule {rule!r} needs a target between 0 and 1 (got {target!r})")
    if y.min(initial=0) == y.max(initial=0):
        raise ValueError("choosing a threshold needs validation cases of both outcomes")
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    thr = np.minimum(thr, 1.0 + 1e-9) if s.max() <= 1 else thr  # sklearn's first point is +inf / max + 1
    if rule == "youden":
        k = int(np.argmax(tpr - fpr))
    elif rule == "sensitivity":
        k = int(np.flatnonzero(tpr >= float(target) - 1e-12)[0])
    else:
        k = int(np.flatnonzero(1 - fpr >= float(target) - 1e-12)[-1])
    return float(thr[k])


def at_threshold(y_bin: Sequence[int], score: Sequence[float], threshold: float) -> dict[str, Any]:
    """Sensitivity, specificity, PPV, NPV (Wilson 95% CIs) when positive means score ≥ threshold."""
    y = np.asarray(y_bin, bool)
    pos = np.asarray(score, float) >= threshold
    tp, fn = int((pos & y).sum()), int((~pos & y).sum())
    fp, tn = int((pos & ~y).sum()), int((~pos & ~y).sum())
    return {"threshold": float(threshold), "tp": tp, "fn": fn, "fp": fp, "tn": tn,
            "sensitivity": proportion(tp, tp + fn), "specificity": proportion(tn, tn + fp),
            "ppv": proportion(tp, tp + fp), "npv": proportion(tn, tn + fn),
            "accuracy": proportion(tp + tn, len(y))}


def calibration_summary(y_true: Sequence[int], probs: np.ndarray, n_bins: int = 10) -> dict[str, Any]:
    return {"brier": brier(y_true, probs), "ece": ece(y_true, probs, n_bins), "nll": nll(y_true, probs),
            "reliability": reliability(y_true, probs, n_bins)}


def operating_point(metrics: dict[str, Any], *, positive: str | None = None, rule: str = "youden",
                    target: float | None = None, n_bins: int = 10) -> dict[str, Any]:
    """Temperature and threshold fitted on the run's out-of-fold predictions, scored on its hold-out.

    ``positive``: the class scored one-vs-rest (default: the second class of a binary
    task, else the class with most validation cases).  Raises ValueError when the run kept no out-of-fold probabilities.
    """
    from mskstudio.ml.evaluate.dashboard_figures import report

    oof, hold = report(metrics, "oof"), report(metrics, "holdout")
    classes = list(oof.get("classes") or metrics.get("classes") or [])
    if not oof.get("probs") or oof.get("y_true") is None:
        raise ValueError("this run kept no out-of-fold probabilities: retrain it to choose an operating point")
    y_val, p_val = _arrays(oof["y_true"], oof["probs"])
    if positive is None:
        # binary: the second class; more classes: the one with most validation cases
        positive = classes[1] if len(classes) == 2 else \
            classes[int(np.bincount(y_val, minlength=len(classes)).argmax())]
    if positive not in classes:
        raise ValueError(f"class {positive!r} is not one of {', '.join(classes)}")
    j = classes.index(positive)
    t = fit_temperature(y_val, p_val)
    p_val_t = apply_temperature(p_val, t)
    thr = choose_threshold((y_val == j).astype(int), p_val_t[:, j], rule, target)
    out: dict[str, Any] = {
        "positive": positive, "rule": rule, "target": target, "temperature": t, "threshold": thr,
        "fitted_on": {"report": "oof", "n": int(len(y_val))},
        "validation": {"before": calibration_summary(y_val, p_val, n_bins),
                       "after": calibration_summary(y_val, p_val_t, n_bins),
                       "at_threshold": at_threshold(y_val == j, p_val_t[:, j], thr)},
    }
    if hold.get("probs") and hold.get("y_true") is not None:
        y_h, p_h = _arrays(hold["y_true"], hold["probs"])
        p_h_t = apply_temperature(p_h, t)
        out["holdout"] = {"before": calibration_summary(y_h, p_h, n_bins),
                          "after": calibration_summary(y_h, p_h_t, n_bins),
                          "at_threshold": at_threshold(y_h == j, p_h_t[:, j], thr),
                          "at_argmax": at_threshold(y_h == j, (p_h.argmax(1) == j).astype(float), 0.5)}
    return out


def apply_operating_point(probs: np.ndarray, class_names: Sequence[str],
                          op: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(temperature-scaled probabilities, decisions) of a stored operating point.

    The positive class wins when its scaled probability reaches the threshold; otherwise
    the most probable of the other classes (binary: the other class).
    """
    p = apply_temperature(np.asarray(probs, float), float(op["temperature"])) if len(probs) else \
        np.asarray(probs, float)
    if op["positive"] not in class_names:
        raise ValueError(f"operating point class {op['positive']!r} is not one of the run's classes")
    j = list(class_names).index(op["positive"])
    if not len(p):
        return p, np.zeros(0, int)
    others = p.copy()
    others[:, j] = -np.inf
    return p, np.where(p[:, j] >= float(op["threshold"]), j, others.argmax(1))


def store_operating_point(project, run_id: int, **kwargs: Any) -> dict[str, Any]:
    """Compute ``operating_point`` for a run and keep it in the run's metrics JSON."""
    import json

    metrics = project.models.metrics(run_id)
    if not metrics:
        raise ValueError(f"model run {run_id} has no metrics")
    op = operating_point(metrics, **kwargs)
    metrics["operating_point"] = op
    project.models.set_fields(run_id, metrics=json.dumps(metrics, default=str))
    project.audit("model_run.operating_point", "model_run", run_id,
                  {k: op[k] for k in ("positive", "rule", "target", "temperature", "threshold")})
    return op


def run_operating_point(project, params: dict[str, Any], ctx) -> dict[str, Any]:
    """Job ``operating-point``: fit temperature + threshold of a run on validation, store it."""
    q = OperatingPointParams.from_json(params).check(project)
    run_id = int(q.model_run_id)
    ctx.progress(0.1, f"run {run_id}: fitting on out-of-fold predictions")
    op = store_operating_point(project, run_id, positive=q.positive, rule=q.rule, target=q.target)
    ctx.progress(1.0, f"run {run_id}: T = {op['temperature']:.3f}, threshold {op['threshold']:.3f}")
    hold = (op.get("holdout") or {}).get("at_threshold") or {}
    return {"run": run_id, "positive": op["positive"], "rule": op["rule"], "temperature": op["temperature"],
            "threshold": op["threshold"],
            "holdout_sensitivity": (hold.get("sensitivity") or {}).get("value"),
            "holdout_specificity": (hold.get("specificity") or {}).get("value"),
            "holdout_n": (hold.get("accuracy") or {}).get("n")}

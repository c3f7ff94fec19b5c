"""A learned study-level call next to the maximum: logistic regression over a study's per-view
scores, fitted on out-of-fold studies only and applied to held-out ones.

Why: the maximum over the AP and lateral views lets one confident false positive on one view
call the whole study, and ignores a lesion seen weakly on both views.  Features per study (in
an order that does not depend on which view came first): the largest and the second-largest
view score (0 for a one-view study), their mean, and how many boxes the study holds at score
>= 0.1 (log1p).  sklearn's ``LogisticRegression`` does the fitting; the threshold is Youden's J
on the same out-of-fold studies (the hold-out never chooses anything).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mskstudio.ml.evaluate.metrics import proportion

FEATURES = ("max view", "second view", "mean of views", "log1p boxes >= 0.1")


def study_features(preds: Mapping[int, tuple], ids: Sequence[int], study_of: Mapping[int, Any]
                   ) -> tuple[list[Any], np.ndarray]:
    """(study keys, feature matrix [S, 4]) of the images ``ids`` (``preds``: image -> (boxes, scores))."""
    views: dict[Any, list[float]] = {}
    boxes: dict[Any, int] = {}
    for i in ids:
        _, s = preds.get(int(i), (None, np.zeros(0)))
        s = np.asarray(s, float)
        st = study_of[int(i)]
        views.setdefault(st, []).append(float(s.max()) if s.size else 0.0)
        boxes[st] = boxes.get(st, 0) + int((s >= 0.1).sum())
    keys = sorted(views, key=str)
    rows = []
    for st in keys:
        v = sorted(views[st], reverse=True) + [0.0]
        rows.append([v[0], v[1], float(np.mean(views[st])), math.log1p(boxes[st])])
    return keys, np.asarray(rows, float).reshape(-1, len(FEATURES))


def study_truth(keys: Sequence[Any], positive: Mapping[int, bool], ids: Sequence[int],
                study_of: Mapping[int, Any]) -> np.ndarray:
    pos = {k: False for k in keys}
    for i in ids:
        pos[study_of[int(i)]] = pos[study_of[int(i)]] or bool(positive[int(i)])
    return np.asarray([pos[k] for k in keys], bool)


def fit_aggregator(x: np.ndarray, y: np.ndarray) -> dict[str, Any] | None:
    """Logistic regression (standardised features) and its Youden threshold; None when the
    fitting studies hold a single class (nothing to learn)."""
    if len(set(y.tolist())) < 2:
        return None
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_curve

    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-9
    lr = LogisticRegression(C=1.0, max_iter=1000).fit((x - mu) / sd, y)
    p = lr.predict_proba((x - mu) / sd)[:, 1]
    fpr, tpr, thr = roc_curve(y, p)
    k = int(np.argmax(tpr - fpr))
    return {"coef": lr.coef_[0].tolist(), "intercept": float(lr.intercept_[0]), "mean": mu.tolist(),
            "std": sd.tolist(), "threshold": float(min(thr[k], 1.0)), "features": list(FEATURES), "n": int(len(y))}


def aggregate_scores(model: Mapping[str, Any], x: np.ndarray) -> np.ndarray:
    z = (x - np.asarray(model["mean"])) / np.asarray(model["std"])
    return 1.0 / (1.0 + np.exp(-(z @ np.asarray(model["coef"]) + model["intercept"])))


def learned_study_calls(model: Mapping[str, Any], x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Sensitivity, specificity (with CIs) and AUC of the learned call on studies ``x``, ``y``."""
    p = aggregate_scores(model, x)
    call = p >= model["threshold"]
    out = {"threshold": model["threshold"], "studies": int(len(y)), "positive_studies": int(y.sum()),
           "sensitivity": proportion(int((call & y).sum()), int(y.sum())),
           "specificity": proportion(int((~call & ~y).sum()), int((~y).sum())), "fitted_on": model["n"]}
    if 0 < y.sum() < len(y):
        from sklearn.metrics import roc_auc_score

        out["auc"] = float(roc_auc_score(y, p))
    return out

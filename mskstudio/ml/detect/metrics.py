"""Lesion-level detection metrics with n and 95 % CIs, FROC, COCO-style AP, study-level calls.

Matching (``match_image``): predictions at or above the threshold, by falling score, each take
the best still-unmatched lesion with IoU > ``iou_thr``; a prediction that takes none is a false
positive (a second box on an already-found lesion is one too, as in COCO).  A lesion is *hit*
when some prediction took it.  Hit rates carry Wilson intervals; false positives per image a
percentile bootstrap over images (seeded).

``average_precision`` follows COCO's algorithm (greedy matching at IoU >= t by score, 101-point
interpolated precision envelope, every area, up to 100 detections an image); no library takes
plain arrays, so it is written here and checked against pycocotools' COCOeval in the tests.

``study_calls`` aggregates image scores (a detector's top box score, or a classifier's
probability) over the images of a study — AP and lateral — by their maximum, into one
lesion / no-lesion call with sensitivity and specificity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mskstudio.ml.detect.data import box_iou
from mskstudio.ml.evaluate.metrics import proportion

FROC_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
Preds = Mapping[int, tuple[np.ndarray, np.ndarray]]  # image id -> (boxes [K, 4], scores [K])


def match_image(gt: np.ndarray, boxes: np.ndarray, scores: np.ndarray, iou_thr: float,
                strict: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(true-positive flag per prediction in falling-score order, hit flag per lesion)."""
    gt = np.asarray(gt, float).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, float), kind="stable")
    boxes = np.asarray(boxes, float).reshape(-1, 4)[order]
    tp = np.zeros(len(boxes), bool)
    hit = np.zeros(len(gt), bool)
    if len(gt) and len(boxes):
        iou = box_iou(boxes, gt)
        for k in range(len(boxes)):
            cand = np.where(hit, -1.0, iou[k])
            j = int(np.argmax(cand))
            if (cand[j] > iou_thr) if strict else (cand[j] >= iou_thr):
                tp[k], hit[j] = True, True
    return tp, hit


def _bootstrap_mean(values: np.ndarray, n_boot: int = 1000, seed: int = 0) -> list[float]:
    if len(values) < 2:
        return [math.nan, math.nan]
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (n_boot, len(values)))].mean(1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def lesion_metrics(truth: Mapping[int, np.ndarray], preds: Preds, *, threshold: float,
                   iou_thr: float = 0.2) -> dict[str, Any]:
    """Hit rate, missed lesions and false positives at one score threshold over ``truth``'s images."""
    hits = n_les = 0
    fp_all, fp_free = [], []
    for i, gt in truth.items():
        boxes, scores = preds.get(i, (np.zeros((0, 4)), np.zeros(0)))
        keep = np.asarray(scores) >= threshold
        tp, hit = match_image(gt, np.asarray(boxes)[keep], np.asarray(scores)[keep], iou_thr)
        hits += int(hit.sum())
        n_les += len(gt)
        fp = int((~tp).sum())
        fp_all.append(fp)
        if len(gt) == 0:
            fp_free.append(fp)
    fp_all_a, fp_free_a = np.asarray(fp_all, float), np.asarray(fp_free, float)
    return {
        "iou": iou_thr, "threshold": threshold,
        "hit_rate": proportion(hits, n_les),
        "lesions": n_les, "missed": n_les - hits,
        "images": len(fp_all), "lesion_free_images": len(fp_free),
        "false_positives": int(fp_all_a.sum()),
        "fp_per_image": {"value": float(fp_all_a.mean()) if len(fp_all) else math.nan,
                         "ci": _bootstrap_mean(fp_all_a), "n": len(fp_all)},
        "fp_per_lesion_free_image": {"value": float(fp_free_a.mean()) if len(fp_free) else math.nan,
                                     "ci": _bootstrap_mean(fp_free_a, seed=1), "n": len(fp_free)},
        "lesion_free_with_fp": proportion(int((fp_free_a > 0).sum()), len(fp_free)),
    }


def per_class_hit_rate(truth: Mapping[int, np.ndarray], truth_classes: Mapping[int, Sequence[Any]], preds: Preds,
                       *, threshold: float, iou_thr: float = 0.2) -> dict[str, Any]:
    """Hit rate per lesion class (the class each truth box carries), from one joint matching of
    every image's boxes: the detector itself is class-agnostic, so a class's hit rate says how
    well lesions of that kind are found.  False positives carry no class and are not split."""
    hits: dict[str, int] = {}
    total: dict[str, int] = {}
    for i, gt in truth.items():
        if len(gt) == 0:
            continue
        boxes, scores = preds.get(i, (np.zeros((0, 4)), np.zeros(0)))
        keep = np.asarray(scores) >= threshold
        _, hit = match_image(gt, np.asarray(boxes)[keep], np.asarray(scores)[keep], iou_thr)
        for c, h in zip(truth_classes[i], hit, strict=True):
            total[str(c)] = total.get(str(c), 0) + 1
            hits[str(c)] = hits.get(str(c), 0) + int(h)
    return {c: {**proportion(hits[c], total[c]), "missed": total[c] - hits[c]} for c in sorted(total)}


def froc(truth: Mapping[int, np.ndarray], preds: Preds, *, iou_thr: float = 0.2,
         rates: Sequence[float] = FROC_RATES) -> dict[str, Any]:
    """Sensitivity against false positives per image over every threshold, and at ``rates``."""
    tps, all_scores, n_les = [], [], 0
    for i, gt in truth.items():
        boxes, scores = preds.get(i, (np.zeros((0, 4)), np.zeros(0)))
        tp, _ = match_image(gt, boxes, scores, iou_thr)
        tps.append(tp)
        all_scores.append(np.sort(np.asarray(scores, float))[::-1])
        n_les += len(gt)
    if not tps or n_les == 0:
        return {"points": [], "at": {}, "lesions": n_les, "images": len(tps)}
    tp = np.concatenate(tps)
    s = np.concatenate(all_scores)
    order = np.argsort(-s, kind="stable")
    tp, s = tp[order], s[order]
    sens = np.cumsum(tp) / n_les
    fppi = np.cumsum(~tp) / len(tps)
    last = np.r_[s[1:] != s[:-1], True]  # one point per distinct threshold
    points = [(float(f), float(se), float(t)) for f, se, t in zip(fppi[last], sens[last], s[last], strict=True)]
    at = {}
    for r in rates:
        ok = fppi[last] <= r
        at[str(r)] = float(sens[last][ok].max()) if ok.any() else 0.0
    if len(points) > 200:  # enough to draw the curve; the run record stays small
        points = [points[int(k)] for k in np.linspace(0, len(points) - 1, 200)]
    return {"points": points, "at": at, "mean_sensitivity": float(np.mean(list(at.values()))),
            "lesions": n_les, "images": len(tps)}


def average_precision(truth: Mapping[int, np.ndarray], preds: Preds, iou_thr: float = 0.5,
                      max_dets: int = 100) -> float:
    """COCO-style AP at one IoU threshold (see the module docstring)."""
    tps, scores, n_les = [], [], 0
    for i, gt in truth.items():
        boxes, sc = preds.get(i, (np.zeros((0, 4)), np.zeros(0)))
        sc = np.asarray(sc, float)
        order = np.argsort(-sc, kind="mergesort")[:max_dets]
        tp, _ = match_image(gt, np.asarray(boxes)[order], sc[order], iou_thr, strict=False)
        tps.append(tp)
        scores.append(np.sort(sc[order])[::-1])
        n_les += len(gt)
    if n_les == 0:
        return math.nan
    tp = np.concatenate(tps) if tps else np.zeros(0, bool)
    s = np.concatenate(scores) if scores else np.zeros(0)
    order = np.argsort(-s, kind="mergesort")
    tp = tp[order]
    ctp, cfp = np.cumsum(tp), np.cumsum(~tp)
    recall = ctp / n_les
    precision = ctp / np.maximum(ctp + cfp, np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    grid = np.linspace(0, 1, 101)
    idx = np.searchsorted(recall, grid, side="left")
    q = np.array([precision[k] if k < len(precision) else 0.0 for k in idx])
    return float(q.mean())


def coco_map(truth: Mapping[int, np.ndarray], preds: Preds) -> dict[str, float]:
    thresholds = np.linspace(0.5, 0.95, 10)
    aps = [average_precision(truth, preds, float(t)) for t in thresholds]
    return {"ap50": aps[0], "ap75": aps[5], "map": float(np.mean(aps))}


def image_scores(preds: Preds, ids: Sequence[int]) -> dict[int, float]:
    """An image's score: its best box's confidence (0 without a box)."""
    out = {}
    for i in ids:
        _, s = preds.get(i, (None, np.zeros(0)))
        out[int(i)] = float(np.max(s)) if len(s) else 0.0
    return out


def study_calls(scores: Mapping[int, float], positive: Mapping[int, bool], study_of: Mapping[int, Any],
                threshold: float) -> dict[str, Any]:
    """One lesion / no-lesion call per study: the maximum of its images' scores >= ``threshold``.

    ``positive[image]`` is the image's truth; a study is positive when any image is."""
    by_study: dict[Any, list[int]] = {}
    for i in scores:
        by_study.setdefault(study_of[i], []).append(i)
    y, s = [], []
    for ims in by_study.values():
        y.append(any(positive[i] for i in ims))
        s.append(max(scores[i] for i in ims))
    y_a, s_a = np.asarray(y, bool), np.asarray(s, float)
    call = s_a >= threshold
    out = {"threshold": threshold, "studies": len(y), "positive_studies": int(y_a.sum()),
           "images_per_study": float(np.mean([len(v) for v in by_study.values()])) if by_study else math.nan,
           "sensitivity": proportion(int((call & y_a).sum()), int(y_a.sum())),
           "specificity": proportion(int((~call & ~y_a).sum()), int((~y_a).sum()))}
    if 0 < y_a.sum() < len(y_a):
        from sklearn.metrics import roc_auc_score

        out["auc"] = float(roc_auc_score(y_a, s_a))
    return out


def youden_threshold(scores: Mapping[int, float], positive: Mapping[int, bool],
                     study_of: Mapping[int, Any]) -> float:
    """The study-level threshold with the largest sensitivity + specificity (e.g. on out-of-fold data)."""
    cands = sorted({round(float(v), 6) for v in scores.values()} | {0.5})
    best, best_j = 0.5, -1.0
    for t in cands:
        c = study_calls(scores, positive, study_of, t)
        se, sp = c["sensitivity"]["value"], c["specificity"]["value"]
        j = (0 if math.isnan(se) else se) + (0 if math.isnan(sp) else sp)
        if j > best_j:
            best, best_j = t, j
    return float(best)

"""Readers' masks and boxes: IoU/Dice per image against scikit-learn and a direct box IoU."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, jaccard_score

from mskstudio.ml.readers.agreement import box_agreement, mask_agreement, summarise


def _box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def test_mask_and_box_agreement_per_image_and_pair(phantom_project):
    p = phantom_project
    rng = np.random.default_rng(0)
    lesion = p.annotations.class_id("lesion")
    images = p.images.ids()[:4]
    drawn: dict = {}
    boxes: dict = {}
    for image_id in images:
        row = p.images.record(image_id)
        for reader in ("ann", "bob"):
            m = np.zeros((row.rows, row.cols), bool)
            y, x = rng.integers(0, row.rows // 2), rng.integers(0, row.cols // 2)
            m[y:y + row.rows // 3, x:x + row.cols // 3] = True
            p.annotations.save_mask(image_id, lesion, m, annotator=reader)
            drawn[(image_id, reader)] = m
            rect = (float(x), float(y), float(x + 40), float(y + 30))
            p.annotations.add_box(image_id, lesion, rect, annotator=reader)
            boxes[(image_id, reader)] = rect
    masks = mask_agreement(p, images)
    assert len(masks) == len(images)
    for r in masks.to_dict("records"):
        a, b = drawn[(r["image_id"], r["reader_a"])].ravel(), drawn[(r["image_id"], r["reader_b"])].ravel()
        assert r["iou"] == pytest.approx(jaccard_score(a, b), abs=1e-12)
        assert r["dice"] == pytest.approx(f1_score(a, b), abs=1e-12)
    box = box_agreement(p, images)
    assert len(box) == len(images)
    for r in box.to_dict("records"):
        assert r["iou"] == pytest.approx(_box_iou(boxes[(r["image_id"], "ann")], boxes[(r["image_id"], "bob")]),
                                         abs=1e-9)
    summary = summarise(masks, n_boot=200)
    (row,) = summary.to_dict("records")
    assert row["n"] == len(images) and row["iou"] == pytest.approx(masks["iou"].mean())
    assert row["iou_lo"] <= row["iou"] <= row["iou_hi"] and row["dice_lo"] <= row["dice"] <= row["dice_hi"]

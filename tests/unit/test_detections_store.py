"""Predicted boxes in the store: stored beside human boxes, invisible to the human-box queries
(ROI, export, viewer), replaced per run and image, accepted into human boxes with an audit row."""

from __future__ import annotations

import pytest

from mskstudio.ml.synthetic import add_synthetic_images


def test_predictions_never_touch_or_pose_as_human_boxes(new_project):
    p = new_project
    cols = {r[1] for r in p.db.query("PRAGMA table_info(boxes)")}
    assert {"score", "run_id", "review"} <= cols
    a, b = sorted(add_synthetic_images(p, 2, size=64))
    cls = p.annotations.class_id("tumour")
    human = p.annotations.add_box(a, cls, (5, 5, 20, 20))
    run = p.models.create("detector", "resnet18")
    n = p.detections.replace_predictions(run, [a, b], [(a, cls, (30, 30, 40, 40), 0.8),
                                                       (b, cls, (1, 1, 9, 9), 0.3)])
    assert n == 2
    assert [r["id"] for r in p.annotations.boxes_of(a)] == [human]
    assert [r["id"] for r in p.annotations.all_boxes()] == [human]
    assert p.annotations.roi_rects(b) == []            # a prediction is no region of interest
    assert len(p.detections.predictions(run_id=run)) == 2
    assert [r["score"] for r in p.detections.predictions(run_id=run, min_score=0.5)] == [0.8]
    # a second detect of image a replaces the run's prediction there, and only there
    p.detections.replace_predictions(run, [a], [(a, cls, (31, 31, 41, 41), 0.7)])
    assert sorted(r["score"] for r in p.detections.predictions(run_id=run)) == [0.3, 0.7]
    assert p.annotations.box(human)["x0"] == 5
    with pytest.raises(ValueError, match="not a detector prediction"):
        p.detections.accept(human)
    pred_b = p.detections.predictions(b)[0]["id"]
    new = p.detections.accept(pred_b)
    assert p.annotations.box(new)["source"] == "human"
    assert p.annotations.roi_rects(b) == [(b, (1.0, 1.0, 9.0, 9.0))]
    # a re-run keeps the reviewed prediction as the record of the review
    p.detections.replace_predictions(run, [b], [])
    assert [r["review"] for r in p.detections.predictions(b, include_reviewed=True)] == ["accepted"]
    assert p.db.scalar("SELECT COUNT(*) FROM audit WHERE action = 'detect.accept'") == 1
    assert p.detections.runs_with_predictions() == [run]

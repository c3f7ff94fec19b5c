"""Lesion boxes drawn while reading: stored with the read, scored against a reference."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import poisson
from statsmodels.stats.proportion import proportion_confint
from test_reader_study import make_study

from mskstudio.ml.readers.read_boxes import (
    iou_matrix,
    matched,
    pairwise_box_iou,
    poisson_ci,
    reader_box_scores,
)
from mskstudio.ml.readers.session import ReadingSession
from mskstudio.store import Project

# A hand-made study: image 1 one lesion, image 2 two, image 3 none.
REFERENCE = {1: [(0, 0, 10, 10)], 2: [(0, 0, 10, 10), (20, 20, 30, 30)], 3: []}
ANN = {1: [(0, 0, 10, 10)],          # IoU 1: a hit at 0.2 and 0.5
       2: [(0, 0, 10, 4)],           # IoU 0.4: a hit at 0.2 only; the second lesion missed
       3: [(50, 50, 60, 60)]}        # no lesion there: a false positive
BOB = {1: [(0, 0, 10, 10)], 2: [], 3: []}


def test_iou_and_matching_count_the_most_pairs():
    assert iou_matrix([(0, 0, 10, 4)], [(0, 0, 10, 10)])[0, 0] == pytest.approx(0.4)
    assert iou_matrix([(0, 0, 10, 10)], [(20, 20, 30, 30)])[0, 0] == 0.0
    assert iou_matrix([], [(0, 0, 1, 1)]).shape == (0, 1)
    # greedy (best IoU first) would pair row 0 with column 0 and leave row 1 unmatched;
    # the assignment pairs 0-1 and 1-0: two hits at 0.2
    iou = np.array([[0.6, 0.3], [0.3, 0.0]])
    assert matched(iou, 0.2) == 2 and matched(iou, 0.5) == 1 and matched(iou, 0.7) == 0


def test_hit_rates_and_false_positives_on_a_hand_made_study():
    ref = {"image": REFERENCE}
    scores = reader_box_scores({("ann", "image"): ANN, ("bob", "image"): BOB}, ref).set_index("reader")
    ann, bob = scores.loc["ann"], scores.loc["bob"]
    assert (ann["images"], ann["reference_boxes"], ann["reader_boxes"]) == (3, 3, 3)
    assert (ann["hits_iou02"], ann["hits_iou05"]) == (2, 1)
    assert ann["hit_rate_iou02"] == pytest.approx(2 / 3) and ann["hit_rate_iou05"] == pytest.approx(1 / 3)
    lo, hi = proportion_confint(2, 3, alpha=0.05, method="wilson")
    assert (ann["hit_rate_iou02_lo"], ann["hit_rate_iou02_hi"]) == pytest.approx((lo, hi))
    # false positives: 3 boxes - 2 hits = 1 over 3 images at 0.2; 2 over 3 at 0.5
    assert ann["fp_per_image_iou02"] == pytest.approx(1 / 3)
    assert ann["fp_per_image_iou05"] == pytest.approx(2 / 3)
    assert (bob["hits_iou05"], bob["fp_per_image_iou05"]) == (1, 0.0)
    assert bob["hit_rate_iou05_hi"] == pytest.approx(proportion_confint(1, 3, method="wilson")[1])
    # the exact Poisson interval: its ends put 2.5% of the Poisson mass beyond the count
    rate, lo, hi = poisson_ci(2, 3)
    assert poisson.sf(1, lo * 3) == pytest.approx(0.025) and poisson.cdf(2, hi * 3) == pytest.approx(0.025)
    assert poisson_ci(0, 3)[1] == 0.0


def test_pairwise_reader_box_iou():
    pairs = pairwise_box_iou({("ann", "image"): ANN, ("bob", "image"): BOB})
    by_image = dict(zip(pairs["image_id"], pairs["iou"], strict=True))
    # image 1 the same box; image 2 and 3 only ann drew one (0); no image where neither drew is kept
    assert by_image == {1: pytest.approx(1.0), 2: 0.0, 3: 0.0}
    two = {1: [(0, 0, 10, 10), (20, 20, 30, 30)]}
    one = {1: [(0, 0, 10, 5)]}
    pair = pairwise_box_iou({("a", "image"): two, ("b", "image"): one})
    # a's boxes' best: 0.5, 0 (mean 0.25); b's box best: 0.5 -> (0.25 + 0.5) / 2
    assert pair["iou"].iloc[0] == pytest.approx(0.375)


def test_boxes_are_stored_with_the_read_never_as_project_boxes(phantom_project, tmp_path, capsys):
    from mskstudio.cli import main
    from mskstudio.ml.readers.analysis import analyze_study, export_reads

    p = phantom_project
    sid = make_study(p, arms="image", readers="ann,bob", boxes=True)
    project_boxes = p.db.scalar("SELECT COUNT(*) FROM boxes")
    cases = p.readers.case_images(sid)
    reference = cases[0]
    lesion = p.annotations.class_id("lesion")
    p.annotations.add_box(reference, lesion, (10, 10, 50, 50), annotator="ref")  # the project's box
    ann = ReadingSession(p, sid, "ann")
    drawn = {}
    while not ann.done:
        case = ann.current()
        boxes = [(10, 10, 50, 40)] if case.image_id == reference else []  # IoU 0.75 with the reference
        if case.index == 1:
            boxes = [(0, 0, 8, 8)]  # a false positive
        drawn[case.image_id] = boxes
        ann.answer(1, seconds=1.0, boxes=boxes)
    bob = ReadingSession(p, sid, "bob")
    bob.answer(1, seconds=1.0, boxes=[(30, 30, 10, 10)])  # corners in any order
    assert p.db.scalar("SELECT COUNT(*) FROM boxes") == project_boxes + 1  # only the reference
    with pytest.raises(ValueError, match="needs a width and a height"):
        bob.answer(1, seconds=1.0, boxes=[(5, 5, 5, 9)])
    assert bob.remaining == len(cases) - 1  # the bad read was not stored
    # a reopened project has every box with its read
    root = p.root
    p.close()
    with Project.open(root) as again:
        stored = again.readers.read_boxes(sid)
        by_image = {r["image_id"]: stored.get(int(r["id"]), []) for r in again.readers.reads(sid)
                    if r["reader"] == "ann"}
        assert by_image == {i: [tuple(float(v) for v in b) for b in bs] for i, bs in drawn.items()}
        assert [(10.0, 10.0, 30.0, 30.0)] in stored.values()
        result = analyze_study(again, sid, n_boot=50)
        scores = result["tables"]["read_box_scores"].set_index("reader")
        assert scores.loc["ann", "hits_iou05"] == 1 and scores.loc["ann", "reference_boxes"] == 1
        assert scores.loc["ann", "fp_per_image_iou02"] == pytest.approx(1 / len(cases))
        assert scores.loc["bob", "images"] == 1
        assert "boxes" in result["tables"]["reads"]
        by_reader = analyze_study(again, sid, n_boot=50, box_reference="ann")["tables"]["read_box_scores"]
        assert list(by_reader["reader"]) == ["bob"] and by_reader["reference"].iloc[0] == "ann"
        with pytest.raises(ValueError, match="--box-reference 'eve'"):
            analyze_study(again, sid, n_boot=50, box_reference="eve")
        from mskstudio.ml.readers.job import report_tables

        assert any(t["title"] == "s1: read box scores" for t in report_tables(again))
        csv = tmp_path / "reads.csv"
        export_reads(again, sid, csv)
    frame = pd.read_csv(csv)
    ann_rows = frame[frame["reader"] == "ann"]
    assert sum(len(json.loads(b)) for b in ann_rows["boxes"]) == 2
    # the CLI: --boxes at creation, --box-reference at analysis
    assert main(["reader-study", "create", str(root), "--name", "cli-boxes", "--label-set", "region",
                 "--truth", "truth:region", "--readers", "ann", "--boxes"]) == 0
    with Project.open(root) as again:
        assert ReadingSession(again, "cli-boxes", "ann").boxes_asked
    capsys.readouterr()
    assert main(["reader-study", "analyze", str(root), str(sid), "--bootstrap", "20",
                 "--box-reference", "project", "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "read_box_scores.csv").exists()


def test_a_study_without_boxes_refuses_them(phantom_project):
    p = phantom_project
    sid = make_study(p, arms="image", readers="ann")
    s = ReadingSession(p, sid, "ann")
    assert not s.boxes_asked
    with pytest.raises(ValueError, match="without boxes"):
        s.answer(1, seconds=1.0, boxes=[(0, 0, 5, 5)])
    assert s.remaining == len(p.readers.case_images(sid))

"""Detector arithmetic on hand-made boxes: fusion, matching, hit rate / FP counts, FROC, AP
(against pycocotools), study-level calls (against a hand count and statsmodels' Wilson CI),
the numpy FCOS decoder (against torchvision's own post-processing) and the letterbox mapping."""

from __future__ import annotations

import numpy as np
import pytest

from mskstudio.ml.detect import metrics as M
from mskstudio.ml.detect.data import Letterbox, box_iou
from mskstudio.ml.detect.ensemble import flip_boxes, fuse


def test_box_iou_hand_made():
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]], float)
    np.testing.assert_allclose(box_iou(a, b)[0], [50 / 150, 0.0, 1.0])


def test_wbf_averages_overlapping_boxes_weighted_by_score():
    # Two passes find the same lesion at slightly different places; the third finds nothing.
    p1 = (np.array([[10, 10, 30, 30]], np.float32), np.array([0.9], np.float32))
    p2 = (np.array([[12, 10, 32, 30]], np.float32), np.array([0.6], np.float32))
    p3 = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    boxes, scores = fuse([p1, p2, p3], 100, fusion="wbf", iou_thr=0.55)
    assert len(boxes) == 1
    x0 = (10 * 0.9 + 12 * 0.6) / 1.5  # score-weighted corner
    np.testing.assert_allclose(boxes[0], [x0, 10, x0 + 20, 30], atol=1e-3)
    # mean score of the cluster, rescaled by how many of the 3 passes saw it: 0.75 * 2 / 3
    assert scores[0] == pytest.approx(0.75 * 2 / 3, abs=1e-5)


def test_nms_fusion_keeps_the_best_box_and_a_separate_one():
    p1 = (np.array([[10, 10, 30, 30], [60, 60, 80, 80]], np.float32), np.array([0.5, 0.4], np.float32))
    p2 = (np.array([[11, 11, 31, 31]], np.float32), np.array([0.8], np.float32))
    boxes, scores = fuse([p1, p2], 100, fusion="nms", iou_thr=0.5)
    np.testing.assert_allclose(scores, [0.8, 0.4])
    np.testing.assert_allclose(boxes[0], [11, 11, 31, 31])
    with pytest.raises(ValueError, match="fusion"):
        fuse([p1, p2], 100, fusion="vote")


def test_flip_boxes_is_its_own_inverse():
    b = np.array([[10, 5, 30, 25]], np.float32)
    np.testing.assert_allclose(flip_boxes(b, 100), [[70, 5, 90, 25]])
    np.testing.assert_allclose(flip_boxes(flip_boxes(b, 100), 100), b)


def _example():
    truth = {
        1: np.array([[10, 10, 30, 30], [50, 50, 70, 70]], float),   # two lesions
        2: np.array([[0, 0, 20, 20]], float),                      # one lesion
        3: np.zeros((0, 4)),                                       # lesion-free
        4: np.zeros((0, 4)),                                       # lesion-free
    }
    preds = {
        1: (np.array([[12, 12, 32, 32], [13, 13, 33, 33], [80, 80, 90, 90]], float),
            np.array([0.9, 0.8, 0.3])),     # hit, duplicate (FP), far away (FP, below 0.5)
        2: (np.array([[15, 15, 35, 35]], float), np.array([0.7])),  # IoU 25/775: misses
        3: (np.array([[0, 0, 5, 5]], float), np.array([0.6])),      # FP on a lesion-free image
        4: (np.zeros((0, 4)), np.zeros(0)),
    }
    return truth, preds


def test_hit_rate_and_false_positives_hand_counted():
    truth, preds = _example()
    m = M.lesion_metrics(truth, preds, threshold=0.5, iou_thr=0.2)
    assert (m["lesions"], m["missed"]) == (3, 2)
    assert m["hit_rate"]["k"] == 1 and m["hit_rate"]["n"] == 3
    # FP: image 1 the duplicate (0.8), image 2 the miss, image 3 the lone box -> 3 over 4 images
    assert m["false_positives"] == 3
    assert m["fp_per_image"]["value"] == pytest.approx(3 / 4)
    assert m["fp_per_lesion_free_image"]["value"] == pytest.approx(1 / 2)
    assert m["lesion_free_with_fp"]["k"] == 1
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = proportion_confint(1, 3, method="wilson")
    assert m["hit_rate"]["ci"] == pytest.approx([lo, hi])
    # at threshold 0.0 the low-scoring far box becomes a fourth FP
    assert M.lesion_metrics(truth, preds, threshold=0.0)["false_positives"] == 4


def test_froc_points_count_hits_and_fps_per_image():
    truth, preds = _example()
    f = M.froc(truth, preds, iou_thr=0.2)
    # by falling score: 0.9 hit, 0.8 FP, 0.7 FP, 0.6 FP, 0.3 FP -> last point 1/3 sens at 4/4 FP/image
    fppi, sens, _ = zip(*f["points"], strict=True)
    np.testing.assert_allclose(fppi, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(sens, [1 / 3] * 5)
    assert f["at"]["0.125"] == pytest.approx(1 / 3)


def _coco_ap(truth, preds, iou):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    for i, gt in truth.items():
        images.append({"id": i, "width": 200, "height": 200})
        for b in gt:
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "iscrowd": 0,
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": (b[2] - b[0]) * (b[3] - b[1])})
        for b, s in zip(*preds[i], strict=True):
            dets.append({"image_id": i, "category_id": 1, "score": float(s),
                         "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "lesion"}]}
    gt.createIndex()
    dt = gt.loadRes(dets)
    ev = COCOeval(gt, dt, "bbox")
    ev.params.iouThrs = np.array([iou])
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
    return float(ev.eval["precision"][0, :, 0, 0, -1].mean())


@pytest.mark.parametrize("iou", [0.3, 0.5, 0.75])
def test_average_precision_matches_pycocotools(iou):
    rng = np.random.default_rng(3)
    truth, preds = {}, {}
    for i in range(1, 13):
        n = int(rng.integers(0, 3))
        xy = rng.uniform(0, 150, (n, 2))
        wh = rng.uniform(15, 45, (n, 2))
        gt = np.hstack([xy, xy + wh])
        truth[i] = gt
        jitter = gt + rng.normal(0, 4, gt.shape)
        extra = rng.uniform(0, 150, (int(rng.integers(0, 3)), 2))
        extra = np.hstack([extra, extra + 25])
        boxes = np.vstack([jitter.reshape(-1, 4), extra.reshape(-1, 4)])
        preds[i] = (boxes, rng.uniform(0.05, 1.0, len(boxes)))
    ours = M.average_precision(truth, preds, iou)
    assert ours == pytest.approx(_coco_ap(truth, preds, iou), abs=1e-6)
    assert 0.0 < ours < 1.0


def test_study_calls_take_the_max_over_views():
    # study A: AP negative-looking, lateral strongly positive -> called positive
    scores = {1: 0.1, 2: 0.9, 3: 0.2, 4: 0.3, 5: 0.8, 6: 0.1}
    positive = {1: True, 2: True, 3: False, 4: False, 5: False, 6: False}
    study_of = {1: "A", 2: "A", 3: "B", 4: "B", 5: "C", 6: "C"}
    c = M.study_calls(scores, positive, study_of, threshold=0.5)
    assert c["studies"] == 3 and c["positive_studies"] == 1
    assert (c["sensitivity"]["k"], c["sensitivity"]["n"]) == (1, 1)
    assert (c["specificity"]["k"], c["specificity"]["n"]) == (1, 2)   # B true negative, C false positive
    assert c["auc"] == pytest.approx(1.0)
    assert M.youden_threshold(scores, positive, study_of) > 0.8


def test_letterbox_maps_full_grid_boxes_both_ways():
    g = Letterbox.of(1000, 500, (512, 256), 128)   # portrait: 128 x 64, padded left and right
    assert (g.nh, g.nw, g.top, g.left) == (128, 64, 0, 32)
    full = np.array([[100, 200, 300, 400]], np.float32)
    sq = g.to_square(full)
    np.testing.assert_allclose(sq, [[32 + 100 * 64 / 500, 200 * 128 / 1000, 32 + 300 * 64 / 500, 400 * 128 / 1000]])
    np.testing.assert_allclose(g.to_full(sq), full, rtol=1e-5)


def test_numpy_decoder_matches_torchvision_postprocessing():
    torch = pytest.importorskip("torch")
    from torchvision.models.detection.image_list import ImageList

    from mskstudio.ml.detect.model import RawDetector, anchor_table, build_detector, decode

    torch.manual_seed(0)
    size = 96
    model = build_detector("resnet18", size=size, fpn_channels=64, score_thresh=0.3, nms_thresh=0.5,
                           detections=20).eval()
    # a fresh head scores every location ~0.07 (the focal-loss prior): spread the scores out
    torch.nn.init.normal_(model.head.classification_head.cls_logits.weight, std=0.3)
    torch.nn.init.normal_(model.head.classification_head.cls_logits.bias, mean=-1.0, std=0.1)
    x = torch.rand(1, 1, size, size)
    cls, reg, ctr = (t.detach().numpy() for t in RawDetector.wrap(model)(x))
    anchors, per_level = anchor_table(model, size)
    boxes, scores = decode(cls[0], reg[0], ctr[0], anchors, per_level, size, score_thresh=0.3,
                           nms_thresh=0.5, detections=20)
    with torch.no_grad():
        images, _ = model.transform([x[0]])
        feats = list(model.backbone(images.tensors).values())
        head = model.head(feats)
        split = [f.shape[-2] * f.shape[-1] for f in feats]
        anchors_t = model.anchor_generator(ImageList(images.tensors, images.image_sizes), feats)
        outs = {k: list(v.split(split, dim=1)) for k, v in head.items()}
        ref = model.postprocess_detections(outs, [list(a.split(split)) for a in anchors_t], images.image_sizes)[0]
    assert len(ref["scores"]) > 0
    np.testing.assert_allclose(np.sort(scores)[::-1], ref["scores"].numpy(), rtol=1e-4)
    np.testing.assert_allclose(boxes, ref["boxes"].numpy(), atol=1e-3)

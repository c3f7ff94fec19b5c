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
    assert [r.id for r in p.annotations.boxes_of(a)] == [human]
    assert [r.id for r in p.annotations.all_boxes()] == [human]
    assert p.annotations.roi_rects(b) == []            # a prediction is no region of interest
    assert len(p.detections.predictions(run_id=run)) == 2
    assert [r.score for r in p.detections.predictions(run_id=run, min_score=0.5)] == [0.8]
    # a second detect of image a replaces the run's prediction there, and only there
    p.detections.replace_predictions(run, [a], [(a, cls, (31, 31, 41, 41), 0.7)])
    assert sorted(r.score for r in p.detections.predictions(run_id=run)) == [0.3, 0.7]
    assert p.annotations.box(human).x0 == 5
    with pytest.raises(ValueError, match="not a detector prediction"):
        p.detections.accept(human)
    pred_b = p.detections.predictions(b)[0].id
    new = p.detections.accept(pred_b)
    assert p.annotations.box(new).source == "human"
    assert p.annotations.roi_rects(b) == [(b, (1.0, 1.0, 9.0, 9.0))]
    # a re-run keeps the reviewed prediction as the record of the review
    p.detections.replace_predictions(run, [b], [])
    assert [r.review for r in p.detections.predictions(b, include_reviewed=True)] == ["accepted"]
    assert p.db.scalar("SELECT COUNT(*) FROM audit WHERE action = 'detect.accept'") == 1
    assert p.detections.runs_with_predictions() == [run]


def test_classifier_study_calls_take_the_max_over_a_studys_views(new_project):
    import json

    from mskstudio.ml.detect.study import classifier_study_calls

    p = new_project
    ids = sorted(add_synthetic_images(p, 8, size=32, truth=False))  # 4 studies of 2 images
    ls = p.labels.label_set("diagnosis")
    healthy, tumour = p.labels.class_id(ls, "healthy"), p.labels.class_id(ls, "tumour")
    truth = [tumour, healthy, healthy, healthy, tumour, tumour, healthy, healthy]  # studies +, -, +, -
    for i, c in zip(ids, truth, strict=True):
        p.labels.set_labels([i], ls, c, source="human")
    run = p.models.create("classifier", "resnet18", label_set_id=ls)
    p.models.set_fields(run, split=json.dumps({"test": ids, "folds": []}))
    p_tumour = [0.2, 0.9, 0.1, 0.3, 0.7, 0.4, 0.6, 0.1]  # study 0 positive only by its 2nd view
    p.models.save_predictions(run, [(i, tumour if s > 0.5 else healthy, max(s, 1 - s),
                                     json.dumps({str(tumour): s, str(healthy): 1 - s}), 0)
                                    for i, s in zip(ids, p_tumour, strict=True)])
    c = classifier_study_calls(p, run, "healthy", threshold=0.5)
    assert c["studies"] == 4 and c["positive_studies"] == 2
    assert (c["sensitivity"]["k"], c["sensitivity"]["n"]) == (2, 2)
    assert (c["specificity"]["k"], c["specificity"]["n"]) == (1, 2)   # study 3: 0.6 -> false positive
    with pytest.raises(ValueError, match="no class"):
        classifier_study_calls(p, run, "normal")


@pytest.mark.parametrize("kind", ["deepcluster", "classifier"])
def test_detector_backbone_starts_from_a_deepcluster_or_classifier_run(new_project, kind):
    torch = pytest.importorskip("torch")
    from mskstudio.ml.classify.classifier import make_classifier
    from mskstudio.ml.classify.train_loop import save_blob
    from mskstudio.ml.detect.model import backbone_state, build_detector, load_backbone_state
    from mskstudio.ml.models import build_backbone

    torch.manual_seed(1)
    if kind == "deepcluster":
        net, _ = build_backbone("resnet18")
        ckpt = {"arch": "resnet18", "backbone": net.state_dict()}
        conv1 = net.conv1.weight
    else:
        clf = make_classifier("resnet18", 3)
        ckpt = {"main": {"arch": "resnet18", "folds": [clf.state_dict()]}}
        conv1 = clf.encoder.conv1.weight
    run = new_project.models.create(kind, "resnet18")
    new_project.models.set_checkpoint(run, save_blob(new_project, ckpt))
    det = build_detector("resnet18", size=64, fpn_channels=64)
    assert not torch.equal(det.backbone.body.conv1.weight, conv1)
    missing = load_backbone_state(det, backbone_state(new_project, f"run:{run}"))
    assert missing == []
    assert torch.equal(det.backbone.body.conv1.weight, conv1)
    assert det.backbone.body.conv1.weight.shape[1] == 1     # one-channel radiographs


def test_ground_truth_is_human_and_imported_boxes_and_masks_once(new_project):
    import numpy as np

    from mskstudio.ml.detect.data import truth_boxes

    p = new_project
    a, b, c = sorted(add_synthetic_images(p, 3, size=64))
    cls = p.annotations.class_id("tumour")
    def mask_of(i):
        r = p.images.record(i)
        out = np.zeros((r.rows, r.cols), bool)
        out[10:20, 10:30] = True
        return out

    m = p.annotations.save_mask(a, cls, mask_of(a), source="import")
    p.annotations.box_from_mask(m)                        # the same lesion as a box: counted once
    p.annotations.add_box(a, cls, (40, 40, 50, 50))       # a second lesion, drawn as a box only
    mm = p.annotations.save_mask(b, cls, mask_of(b), source="model")
    p.annotations.box_from_mask(mm)                       # a model's mask and its box: no truth
    run = p.models.create("detector", "resnet18")
    p.detections.replace_predictions(run, [c], [(c, cls, (1, 1, 5, 5), 0.9)])
    truth, class_id = truth_boxes(p)
    assert class_id == cls
    assert sorted(map(tuple, truth[a].tolist())) == [(10, 10, 30, 20), (40, 40, 50, 50)]
    assert len(truth[b]) == 0 and len(truth[c]) == 0

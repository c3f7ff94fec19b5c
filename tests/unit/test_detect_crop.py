"""Cheap levers of the detector on CPU: training on lesion-biased windows of the letterboxed
square (``data.lesion_crop``) and training only the first folds (``train_folds``)."""

from __future__ import annotations

import random

import numpy as np
import pytest

from mskstudio.jobs import JobContext


def test_lesion_crop_keeps_pixels_and_moves_boxes_with_the_window():
    from mskstudio.ml.detect.data import lesion_crop

    x = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    boxes = np.asarray([[40.0, 44.0, 52.0, 58.0]], np.float32)
    for seed in range(20):
        w, b = lesion_crop(x, boxes, 32, random.Random(seed), p_lesion=1.0)
        assert w.shape == (32, 32)
        # the window is a block of the square: its first pixel says where it lies
        y0, x0 = divmod(int(w[0, 0]), 64)
        np.testing.assert_array_equal(w, x[y0:y0 + 32, x0:x0 + 32])
        assert len(b) == 1  # a lesion window keeps the lesion (>= 40 % of it inside)
        moved = boxes[0] - [x0, y0, x0, y0]
        np.testing.assert_allclose(b[0], np.clip(moved, 0, 32))
    # a window that misses the lesion drops its box; no window bigger than the square
    w, b = lesion_crop(x, boxes, 16, random.Random(0), p_lesion=0.0)
    assert w.shape == (16, 16)
    inside = [len(lesion_crop(x, boxes, 16, random.Random(s), p_lesion=0.0)[1]) for s in range(40)]
    assert 0 in inside
    same, kept = lesion_crop(x, boxes, 64, random.Random(0))
    assert same is x and kept is boxes


@pytest.mark.parametrize("bad", [{"crop": 48}, {"crop": 128}, {"train_folds": 3}, {"train_folds": 0}])
def test_crop_and_train_folds_are_checked(bad, new_project):
    from mskstudio.ml.detect.params import TrainDetParams

    problems = TrainDetParams.from_json({"size": 96, "k": 2, **bad}).problems(new_project)
    assert any(word in " ".join(problems) for word in ("crop", "folds")), problems


@pytest.mark.timeout(900)
def test_one_fold_trained_on_windows_scores_whole_images(tmp_path):
    pytest.importorskip("torch")
    from detect_planted import add_planted_squares

    from mskstudio.ml.detect.predict import load_detector
    from mskstudio.ml.detect.train import run_train_det
    from mskstudio.store import Project

    project = Project.create(tmp_path / "p.mskproj")
    add_planted_squares(project, 12, size=96, seed=1)
    res = run_train_det(project, {"size": 96, "crop": 64, "fpn_channels": 64, "k": 3, "train_folds": 1,
                                  "test_fraction": 0.25, "epochs": 1, "batch_size": 4, "threads": 1},
                        JobContext.null())
    ckpt = load_detector(project, res["model_run_id"])
    assert len(ckpt["folds"]) == 1 and ckpt["size"] == 96
    m = project.models.metrics(res["model_run_id"])
    assert m["n_folds"] == 1 and m["holdout"]["lesion"]["0.2"]["hit_rate"]["n"] > 0
    project.close()


def test_a_lighter_head_has_fewer_convolutions_and_checks_its_range():
    pytest.importorskip("torch")
    from mskstudio.ml.detect.model import build_detector
    from mskstudio.ml.detect.predict import model_from_state

    def n_params(m):
        return sum(p.numel() for p in m.head.parameters())

    full, light = (build_detector("resnet18", size=64, fpn_channels=64, head_convs=h) for h in (4, 2))
    # two 3x3 convolutions (64 -> 64, + GroupNorm) fewer in each of the two branches
    assert n_params(full) - n_params(light) == 2 * 2 * (64 * 64 * 9 + 64 + 2 * 64)
    p = {"arch": "resnet18", "size": 64, "fpn_channels": 64, "head_convs": 2, "score_thresh": 0.05,
         "nms_thresh": 0.5, "detections": 20}
    assert n_params(model_from_state(p, light.state_dict())) == n_params(light)
    with pytest.raises(ValueError, match="head convolutions"):
        build_detector("resnet18", size=64, fpn_channels=64, head_convs=5)


def test_learned_study_call_uses_the_second_view_where_the_maximum_cannot():
    from sklearn.metrics import roc_auc_score

    from mskstudio.ml.detect import aggregate as A
    from mskstudio.ml.detect.metrics import image_scores, study_calls

    # lesion studies: both views moderately sure (0.4-0.5); lesion-free studies: one artefact
    # view very sure (0.6-0.7), the other clean.  The maximum ranks them backwards.
    rng = np.random.default_rng(0)
    preds, study_of, positive, ids = {}, {}, {}, []
    for st in range(40):
        sick = st % 2 == 0
        a, b = (rng.uniform(0.4, 0.5), rng.uniform(0.4, 0.5)) if sick else (rng.uniform(0.6, 0.7), 0.0)
        for view, s in enumerate((a, b)):
            i = 2 * st + view
            preds[i] = (np.zeros((1, 4)), np.asarray([s])) if s else (np.zeros((0, 4)), np.zeros(0))
            study_of[i], positive[i] = st, sick
            ids.append(i)
    fit_ids, test_ids = ids[:40], ids[40:]
    keys, x = A.study_features(preds, fit_ids, study_of)
    assert x.shape == (20, 4) and x[0, 0] >= x[0, 1]
    y = A.study_truth(keys, positive, fit_ids, study_of)
    model = A.fit_aggregator(x, y)
    keys_t, x_t = A.study_features(preds, test_ids, study_of)
    y_t = A.study_truth(keys_t, positive, test_ids, study_of)
    learned = A.learned_study_calls(model, x_t, y_t)
    by_max = study_calls(image_scores(preds, test_ids), positive, study_of, 0.5)
    assert by_max["auc"] < 0.5 < learned["auc"] == 1.0
    assert learned["sensitivity"]["value"] == 1.0 and learned["specificity"]["value"] == 1.0
    # the probabilities are sklearn's own
    assert abs(roc_auc_score(y_t, A.aggregate_scores(model, x_t)) - learned["auc"]) < 1e-12
    assert A.fit_aggregator(x, np.ones(len(y), bool)) is None  # one class: nothing to learn


def test_per_class_hit_rate_hand_counted():
    from mskstudio.ml.detect.metrics import lesion_metrics, per_class_hit_rate

    truth = {1: np.asarray([[0, 0, 10, 10], [50, 50, 70, 70]], float), 2: np.asarray([[20, 20, 40, 40]], float),
             3: np.zeros((0, 4))}
    classes = {1: ["chondroma", "osteosarcoma"], 2: ["osteosarcoma"], 3: []}
    preds = {1: (np.asarray([[1, 1, 10, 10], [50, 50, 70, 70]], float), np.asarray([0.9, 0.2])),
             2: (np.asarray([[20, 20, 40, 40]], float), np.asarray([0.8])),
             3: (np.asarray([[5, 5, 9, 9]], float), np.asarray([0.7]))}
    out = per_class_hit_rate(truth, classes, preds, threshold=0.5, iou_thr=0.2)
    # chondroma 1/1; osteosarcoma: the box on image 1 is below the threshold, image 2 is hit -> 1/2
    assert (out["chondroma"]["k"], out["chondroma"]["n"]) == (1, 1)
    assert (out["osteosarcoma"]["k"], out["osteosarcoma"]["n"], out["osteosarcoma"]["missed"]) == (1, 2, 1)
    total = lesion_metrics(truth, preds, threshold=0.5, iou_thr=0.2)["hit_rate"]
    assert sum(v["k"] for v in out.values()) == total["k"] and sum(v["n"] for v in out.values()) == total["n"]

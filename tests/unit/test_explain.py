"""Grad-CAM: shape and range in analysis coordinates, caching, and the peak on a planted square."""

from __future__ import annotations

import numpy as np
import pytest

SQUARE = 14


@pytest.fixture(scope="module")
def square_run(tmp_path_factory):
    import torch

    from mskstudio.jobs import JobContext
    from mskstudio.ml.train import run_train
    from mskstudio.store import Project

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    project = Project.create(tmp_path_factory.mktemp("cam") / "c.mskproj")
    ls = project.labels.label_set("square")
    yes, no = project.labels.class_id(ls, "square"), project.labels.class_id(ls, "none")
    where = {}
    for i in range(64):
        pid = project.images.patient_id(f"p{i}")
        sid = project.images.study_id(pid, f"1.2.3.{i}")
        h, w = 64, 56  # not square: the map must come back in analysis coordinates
        image_id = project.images.add_image({"study_id": sid, "sop_uid": f"1.2.4.{i}", "rows": h,
                                             "cols": w}, None)
        a = rng.normal(0.3, 0.05, (h, w)).clip(0, 1)
        if i % 2 == 0:
            y0, x0 = rng.integers(2, h - SQUARE - 2), rng.integers(2, w - SQUARE - 2)
            a[y0:y0 + SQUARE, x0:x0 + SQUARE] = 0.95
            where[image_id] = (int(y0), int(x0))
        project.images.save_analysis(image_id, np.round(a * 65535).astype(np.uint16))
        project.labels.set_label(image_id, ls, yes if i % 2 == 0 else no, source="import")
    res = run_train(project, {"label_set": "square", "arch": "tinycnn", "size": 64, "k": 2, "epochs": 4,
                              "batch_size": 16, "lr": 5e-3, "augment": False, "n_boot": 0,
                              "reject": "none", "patience": 10}, JobContext.null())
    yield project, res["model_run_id"], where, yes
    project.close()


def test_cam_shape_range_and_cache(square_run):
    from mskstudio.ml.explain import explain

    project, run_id, where, yes = square_run
    image_id = next(iter(where))
    heat = explain(project, run_id, image_id)
    assert heat.shape == project.images.load_analysis(image_id).shape == (64, 56)
    assert heat.dtype == np.float32 and heat.min() >= 0.0 and heat.max() == pytest.approx(1.0)
    assert list(project.cache_path("cam", str(run_id), "x").parent.glob(f"{image_id}-gradcam-*.npy"))
    assert np.array_equal(explain(project, run_id, image_id), heat)  # from the cache


def test_cam_peaks_inside_the_planted_square(square_run):
    from mskstudio.ml.explain import explain

    project, run_id, where, yes = square_run
    hits = 0
    for image_id, (y0, x0) in list(where.items())[:8]:
        heat = explain(project, run_id, image_id, class_id=yes)
        py, px = np.unravel_index(np.argmax(heat), heat.shape)
        m = 3  # a CAM is coarse (the last stage sees 16x16 cells of 4 px)
        if y0 - m <= py < y0 + SQUARE + m and x0 - m <= px < x0 + SQUARE + m:
            hits += 1
    assert hits >= 6


def test_scorecam_option_and_unknown_method(square_run):
    from mskstudio.ml.explain import explain

    project, run_id, where, yes = square_run
    image_id = next(iter(where))
    heat = explain(project, run_id, image_id, method="scorecam")
    assert heat.shape == (64, 56) and heat.min() >= 0 and heat.max() <= 1
    with pytest.raises(ValueError):
        explain(project, run_id, image_id, method="lime")

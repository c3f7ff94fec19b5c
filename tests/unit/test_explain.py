"""Grad-CAM: shape and range in analysis coordinates, caching, and the peak on a planted square."""

from __future__ import annotations

import numpy as np
import pytest

from mskstudio.io.analysis import load_analysis

SQUARE = 14


@pytest.fixture(scope="module")
def square_run(tmp_path_factory):
    import torch

    from mskstudio.jobs import JobContext
    from mskstudio.ml.classify.train import run_train
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
    from mskstudio.ml.explain.gradcam import explain

    project, run_id, where, yes = square_run
    image_id = next(iter(where))
    heat = explain(project, run_id, image_id)
    assert heat.shape == load_analysis(project, image_id).shape == (64, 56)
    assert heat.dtype == np.float32 and heat.min() >= 0.0 and heat.max() == pytest.approx(1.0)
    assert list(project.cache_path("cam", str(run_id), "x").parent.glob(f"{image_id}-gradcam-*.npy"))
    assert np.array_equal(explain(project, run_id, image_id), heat)  # from the cache


def test_cam_peaks_inside_the_planted_square(square_run):
    from mskstudio.ml.explain.gradcam import explain

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
    from mskstudio.ml.explain.gradcam import explain

    project, run_id, where, yes = square_run
    image_id = next(iter(where))
    heat = explain(project, run_id, image_id, method="scorecam")
    assert heat.shape == (64, 56) and heat.min() >= 0 and heat.max() <= 1
    with pytest.raises(ValueError):
        explain(project, run_id, image_id, method="lime")


def test_scales_parse_and_reject_impossible_values():
    from mskstudio.ml.explain.gradcam import DEFAULT_SCALES, parse_scales

    assert parse_scales(None) == DEFAULT_SCALES
    assert parse_scales("2, 1,1.5,1") == (1.0, 1.5, 2.0)
    assert parse_scales([1]) == (1.0,)
    for bad in ("", "0", "-1,1", "1,abc", "9"):
        with pytest.raises(ValueError, match="CAM scales"):
            parse_scales(bad)


def test_multi_scale_cam_is_its_own_cached_map(square_run):
    from mskstudio.ml.explain.gradcam import SINGLE_SCALE, cam_path, explain

    project, run_id, where, yes = square_run
    image_id = list(where)[1]
    single = explain(project, run_id, image_id, class_id=yes, scales=SINGLE_SCALE)
    multi = explain(project, run_id, image_id, class_id=yes, scales=(1.0, 2.0))
    assert multi.shape == single.shape == (64, 56)
    assert multi.min() == pytest.approx(0.0) and multi.max() == pytest.approx(1.0)
    assert not np.array_equal(multi, single)
    paths = {cam_path(project, run_id, image_id, class_id=yes, scales=s) for s in (SINGLE_SCALE, (1.0, 2.0))}
    assert len(paths) == 2 and all(p.exists() for p in paths)
    # the mean of the per-scale maps, recomputed here from the 2x map alone
    double = explain(project, run_id, image_id, class_id=yes, scales=(2.0,), use_cache=False)
    mean = (single + double) / 2
    expected = (mean - mean.min()) / (mean.max() - mean.min())
    assert np.allclose(multi, expected, atol=1e-5)

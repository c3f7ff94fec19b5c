"""Pointing game: the peak/mask rule on hand-made maps, and a run scored end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mskstudio.ml.explain.gradcam import DEFAULT_SCALES
from mskstudio.ml.explain.pointing import body_mask, grown_mask, score_peak


def test_grown_mask_is_a_disc():
    mask = np.zeros((9, 9), bool)
    mask[4, 4] = True
    assert grown_mask(mask, 0.3).sum() == 1          # below half a pixel: unchanged
    assert grown_mask(mask, 1.0).sum() == 5          # the 4-neighbourhood plus the centre
    assert grown_mask(mask, 2.0).sum() == 13         # x^2 + y^2 <= 4


def test_score_peak_hit_miss_and_chance():
    image = np.zeros((10, 10), np.float32)
    image[:, 2:] = 1.0                               # body: columns 2..9, 80 pixels
    lesion = np.zeros((10, 10), bool)
    lesion[4:6, 4:6] = True                          # 4 pixels, all in the body
    heat = np.zeros((10, 10), np.float32)
    heat[5, 5] = 1.0
    hit, chance = score_peak(heat, lesion, body_mask(image))
    assert hit and chance == pytest.approx(4 / 80)
    heat[0, 9] = 2.0
    hit, _ = score_peak(heat, lesion, body_mask(image))
    assert not hit


@pytest.fixture
def trained_diagnosis_run(phantom_project, phantom_archive):
    import torch

    from mskstudio.io.exports.annotations import import_masks
    from mskstudio.jobrun import submit_and_run

    torch.set_num_threads(2)
    import_masks(phantom_project, phantom_archive, boxes=False)
    params = {"label_set": "diagnosis", "arch": "tinycnn", "size": 64, "k": 2, "epochs": 1, "batch_size": 16,
              "test_fraction": 0.5,
              "n_boot": 20, "seed": 0, "augment": False, "device": "cpu"}
    return phantom_project, int(submit_and_run(phantom_project, "train", params)["model_run_id"])


def test_pointing_game_scores_held_out_lesions(trained_diagnosis_run):
    from mskstudio.jobrun import submit_and_run
    from mskstudio.ml.explain.pointing import pointing_game
    from mskstudio.ml.segment.data import training_masks

    project, run_id = trained_diagnosis_run
    held_out = set(json.loads(project.models.get(run_id)["split"])["test"])
    with_mask = held_out & set(training_masks(project))
    assert with_mask, "the phantom hold-out should contain lesion images"

    every = pointing_game(project, run_id, only_correct=False, tolerance_mm=0.0)
    assert every["scales"] == list(DEFAULT_SCALES)  # scored on the map the review shows
    assert every["held_out_lesion_images"] == len(with_mask)
    assert {r["image_id"] for r in every["images"]} == with_mask
    assert every["pointing"]["n"] == len(with_mask)
    assert every["pointing"]["k"] == sum(r["hit"] for r in every["images"])
    assert all(0.0 < r["chance"] < 1.0 for r in every["images"])
    # a tolerance larger than any image makes every peak a hit
    wide = pointing_game(project, run_id, only_correct=False, tolerance_mm=10_000.0, scales=(1.0,))
    assert wide["pointing"]["k"] == len(with_mask) and wide["scales"] == [1.0]

    summary = submit_and_run(project, "pointing-game", {"model_run": run_id})
    assert summary["pointing"]["n"] == summary["correctly_classified"] == sum(r["correct"] for r in every["images"])
    stored = json.loads(project.models.get(run_id)["metrics"])["pointing_game"]
    assert stored["pointing"]["k"] == summary["pointing"]["k"]


def test_cli_explain_and_pointing_game_take_scales(trained_diagnosis_run, tmp_path):
    import subprocess
    import sys

    from mskstudio.ml.explain.gradcam import cam_path

    project, run_id = trained_diagnosis_run
    image_id = json.loads(project.models.get(run_id)["split"])["test"][0]

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "mskstudio", *map(str, args)], capture_output=True,
                              text=True, timeout=300)

    r = cli("explain", project.root, run_id, "--images", image_id, "--scales", "2,1", "--png", tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["scales"] == [1.0, 2.0]
    assert cam_path(project, run_id, image_id, scales=(1.0, 2.0)).exists()
    assert (tmp_path / f"{image_id}.png").exists()
    r = cli("pointing-game", project.root, run_id, "--scales", "1", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["scales"] == [1.0]
    r = cli("explain", project.root, run_id, "--scales", "0,1")
    assert r.returncode != 0 and "CAM scales" in r.stderr and "Traceback" not in r.stderr

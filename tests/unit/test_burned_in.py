"""Burned-in annotation (issue 23, item 4): images whose header says BurnedInAnnotation YES
can be left out of training; the choice is recorded in the run's parameters, and those
images reach neither the folds nor the hold-out."""

from __future__ import annotations

import pytest

from mskstudio.jobrun import submit_and_run
from mskstudio.ml.classify.params import TrainParams

FAST = {"arch": "tinycnn", "size": 32, "k": 2, "epochs": 1, "batch_size": 16, "n_boot": 20,
        "patience": 5, "seed": 0}


@pytest.fixture
def project(new_project):
    from mskstudio.ml.synthetic import add_synthetic_images

    add_synthetic_images(new_project, 40, seed=3, size=32, thumbnails=False)
    ids = new_project.images.ids()
    # Every third image has text in its pixels; some are unknown (no attribute in the header).
    with new_project.db.transaction() as c:
        for n, image_id in enumerate(ids):
            flag = 1 if n % 3 == 0 else (None if n % 3 == 1 else 0)
            c.execute("UPDATE images SET burned_in_annotation = ? WHERE id = ?", (flag, image_id))
    return new_project


def _used(project, run_id: int) -> set[int]:
    split = project.models.record(run_id).split
    used = {int(i) for i in split["test"]}
    for fold in split["folds"]:
        used |= {int(i) for i in fold["train"]} | {int(i) for i in fold["val"]}
    return used


def test_excluded_images_never_reach_training(project):
    burned = project.images.burned_in_ids()
    assert len(burned) == 14  # ids 0, 3, …, 39 of 40
    result = submit_and_run(project, "train", {"label_set": "region", "exclude_burned_in": True, **FAST})
    run = result["model_run_id"]
    used = _used(project, run)
    assert used and not used & burned
    assert used == set(project.images.ids()) - burned  # unknown (NULL) is not "yes": kept
    assert project.models.record(run).params["exclude_burned_in"] is True


def test_by_default_they_are_kept_and_the_default_is_recorded(project):
    assert TrainParams().exclude_burned_in is False
    result = submit_and_run(project, "train", {"label_set": "region", **FAST})
    run = result["model_run_id"]
    assert project.images.burned_in_ids() <= _used(project, run)
    assert project.models.record(run).params["exclude_burned_in"] is False


def test_leaving_them_out_is_checked_before_a_job_starts(project):
    """When only burned-in images carry one class, excluding them leaves one class: said at once."""
    ls = project.labels.find_label_set("region")
    classes = {r.name: r.id for r in project.labels.classes(ls)}
    labels = project.labels.effective(ls)
    burned = project.images.burned_in_ids()
    keep = next(iter(classes.values()))
    with project.db.transaction() as c:  # every image not burned in gets one and the same class
        for image_id in labels:
            if image_id not in burned:
                c.execute("UPDATE labels SET class_id = ? WHERE image_id = ? AND label_set_id = ?",
                          (keep, image_id, ls))
    assert TrainParams(label_set="region", **FAST).problems(project) == []
    problems = TrainParams(label_set="region", exclude_burned_in=True, **FAST).problems(project)
    assert any("at least two classes" in p for p in problems)


def test_cli_flag(project, capsys):
    from mskstudio.cli import build_parser

    args = build_parser().parse_args(["train", str(project.root), "region", "--exclude-burned-in"])
    assert args.exclude_burned_in is True
    args = build_parser().parse_args(["train", str(project.root), "region"])
    assert args.exclude_burned_in is False

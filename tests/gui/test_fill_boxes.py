"""Annotate dock: "Fill boxes with model" segments inside a drawn box, as one undoable edit."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt


def test_fill_box_with_the_box_segmenter(window, qtbot, phantom_archive):
    import torch

    from mskstudio.io.exports.annotations import import_masks
    from mskstudio.jobs import JobContext
    from mskstudio.ml.segment import roi_seg as sr
    from mskstudio.ml.segment.data import training_masks
    from mskstudio.ml.segment.train_box import run_train_box_seg

    window.load_workspaces(entries=[], menus=[], docks=[
        ("Annotate", "mskstudio.gui.annotate.dock:AnnotateDock", Qt.DockWidgetArea.RightDockWidgetArea)])
    dock = window.docks["Annotate"].view()
    ctl, project = dock.controller, window.project

    window.errors.clear()
    dock.panel.fill_btn.click()  # no box segmenter yet: explained, nothing submitted
    assert window.errors[-1][0] == "No box segmenter"

    torch.set_num_threads(1)
    import_masks(project, phantom_archive, annotator="surgeon-a", class_name="tumour")
    run_train_box_seg(project, {"crop": 32, "epochs": 2, "samples_per_image": 2, "seed": 0}, JobContext.null())
    truth = training_masks(project)
    image_id = sorted(truth)[0]
    window.open_image(image_id)
    qtbot.waitUntil(lambda: ctl.image_id == image_id, timeout=10000)
    ctl.class_id = project.annotations.class_id("tumour")
    ctl._load_mask()
    for m in project.annotations.masks_of(image_id, source="import"):  # the surgeon starts from nothing
        project.annotations.delete_mask(m.id)
    ctl._load_mask()
    assert not ctl.mask.any()

    window.errors.clear()
    dock.panel.fill_btn.click()  # no box drawn yet
    assert window.errors[-1][0] == "No box"

    x0, y0, x1, y1 = sr.mask_box(truth[image_id])
    ctl.set_tool("box")
    ctl.handle("press", (x0 - 3, y0 - 3))
    ctl.handle("release", (x1 + 3, y1 + 3))
    assert len(project.annotations.boxes_of(image_id)) == 1

    job_id = dock.fill_boxes()
    qtbot.waitUntil(lambda: job_id not in dock._fill_jobs, timeout=60000)
    model_id = project.annotations.find_mask(image_id, ctl.class_id, annotator="model", source="model")
    proposal = project.annotations.load_mask(model_id)
    assert proposal.any() and proposal.shape == truth[image_id].shape
    np.testing.assert_array_equal(ctl.mask, proposal)  # merged into the surgeon's mask ...
    ctl.flush()
    human = project.annotations.find_mask(image_id, ctl.class_id, source="human")
    np.testing.assert_array_equal(project.annotations.load_mask(human), proposal)  # ... and saved
    ctl.undo()  # ... as one undoable edit; the model's proposal stays for provenance
    ctl.flush()
    assert not project.annotations.load_mask(human).any()
    assert project.annotations.find_mask(image_id, ctl.class_id, annotator="model", source="model") == model_id

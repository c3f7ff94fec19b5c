"""Annotate dock: "Boxes from detector" pre-fills the open image's boxes from the detector's
predictions (accepted, audited, in the drawing class), then "Fill boxes with model" turns them
into a mask: box -> mask in two clicks."""

from __future__ import annotations

from PySide6.QtCore import Qt


def test_detector_boxes_then_fill_in_two_clicks(window, qtbot, phantom_archive):
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

    torch.set_num_threads(1)
    import_masks(project, phantom_archive, annotator="surgeon-a", class_name="tumour")
    truth = training_masks(project)
    image_id = sorted(truth)[0]
    window.open_image(image_id)
    qtbot.waitUntil(lambda: ctl.image_id == image_id, timeout=10000)
    tumour = project.annotations.class_id("tumour")
    other = project.annotations.class_id("detector class")
    ctl.class_id = tumour
    for m in project.annotations.masks_of(image_id, source="import"):  # the surgeon starts from nothing
        project.annotations.delete_mask(m.id)
    for b in project.annotations.boxes_of(image_id):
        project.annotations.delete_box(b.id)
    ctl._load_mask()

    window.errors.clear()
    dock.panel.detector_btn.click()  # no detector run and no prediction: explained, nothing changes
    assert window.errors[-1][0] == "No detector"
    assert project.annotations.boxes_of(image_id) == []

    # a detector run's stored predictions on this image: one on the lesion, one elsewhere; the
    # detector's own class differs from the class the surgeon draws in
    x0, y0, x1, y1 = sr.mask_box(truth[image_id])
    run_id = project.models.create("detector", "resnet18", name="test detector")
    project.detections.replace_predictions(run_id, [image_id], [
        (image_id, other, (x0 - 2, y0 - 2, x1 + 2, y1 + 2), 0.8), (image_id, other, (0, 0, 5, 5), 0.2)])
    dock.panel.detector_btn.click()  # click 1
    boxes = project.annotations.boxes_of(image_id)
    assert len(boxes) == 2 and {b.class_id for b in boxes} == {tumour}
    assert {b.source for b in boxes} == {"human"}
    assert project.detections.predictions(image_id, run_id=run_id) == []  # both reviewed (accepted)
    audit = project.db.query("SELECT action FROM audit WHERE action = 'detect.accept'")
    assert len(audit) == 2
    dock.panel.detector_btn.click()  # again: nothing left to accept, said so, no duplicate boxes
    assert window.errors[-1][0] == "No lesion found"
    assert len(project.annotations.boxes_of(image_id)) == 2

    run_train_box_seg(project, {"crop": 32, "epochs": 2, "samples_per_image": 2, "seed": 0}, JobContext.null())
    dock.panel.fill_btn.click()  # click 2
    qtbot.waitUntil(lambda: not dock._fill_jobs, timeout=60000)
    assert ctl.mask.any()
    ctl.flush()
    human = project.annotations.find_mask(image_id, tumour, source="human")
    assert human is not None and project.annotations.load_mask(human).any()

"""Lesions dock: predicted boxes drawn with their confidence, the threshold slider filters them,
accept writes a human box, reject dismisses; Find lesions explains when there is no detector."""

from __future__ import annotations

from PySide6.QtCore import Qt


def test_predicted_boxes_slider_accept_reject(window, qtbot):
    window.load_workspaces(entries=[], docks=[
        ("Lesions", "mskstudio.gui.detect.dock:DetectionsDock", Qt.DockWidgetArea.RightDockWidgetArea)],
        menus=["mskstudio.gui.detect.dock:add_detect_menu"])
    dock = window.docks["Lesions"].view()
    project = window.project
    assert "find_lesions" in window.actions_by_name

    window.errors.clear()
    window.actions_by_name["find_lesions"].trigger()  # no detector yet: explained, nothing submitted
    assert window.errors[-1][0] == "No detector"

    image_id = window.image_id
    run_id = project.models.create("detector", "resnet18", name="test detector")
    cls = project.annotations.class_id("tumour")
    project.detections.replace_predictions(run_id, [image_id], [
        (image_id, cls, (10, 10, 60, 60), 0.9), (image_id, cls, (100, 100, 140, 150), 0.4),
        (image_id, cls, (200, 20, 230, 50), 0.1)])
    dock.reload_runs()
    assert dock.run_id == run_id
    dock.slider.setValue(30)
    assert dock.list.count() == 2 and len(dock.items) == 2
    assert dock.list.item(0).text().startswith("0.90")
    assert all(it.parentItem() is window.viewer.canvas for it in dock.items)
    dock.slider.setValue(50)
    assert dock.list.count() == 1
    dock.slider.setValue(5)
    assert dock.list.count() == 3

    n_human = len(project.annotations.boxes_of(image_id))
    dock.list.setCurrentRow(0)
    new_id = dock.accept_selected()
    assert project.annotations.box(new_id).source == "human"
    assert len(project.annotations.boxes_of(image_id)) == n_human + 1
    assert dock.list.count() == 2          # the accepted prediction leaves the list
    dock.list.setCurrentRow(0)
    dock.reject_selected()
    assert dock.list.count() == 1
    assert [r.review for r in project.detections.predictions(image_id, include_reviewed=True)] == \
        ["accepted", "dismissed", None]

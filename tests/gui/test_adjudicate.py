"""The adjudication view in the real main window: two readers' masks, IoU/Dice, pick/union/intersection/redraw."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtCore import Qt

from mskstudio.gui.annotate.adjudicate import COLOR_A, COLOR_B, add_adjudication_menu
from mskstudio.imaging import masks as M


def _disc(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


@pytest.fixture
def adjudication(window, qtbot):
    window.load_workspaces(entries=[], menus=[], docks=[
        ("Annotate", "mskstudio.gui.annotate.dock:AnnotateDock", Qt.DockWidgetArea.RightDockWidgetArea)])
    add_adjudication_menu(window)
    dock = window.docks["Annotate"].view()
    project, image_id = window.project, window.image_id
    qtbot.waitUntil(lambda: dock.controller.image_id == image_id, timeout=10000)
    row = project.images.record(image_id)
    shape = (row.rows, row.cols)
    tumour = project.annotations.class_id("tumour")
    r = min(shape) // 6
    a = _disc(shape, shape[0] // 2, shape[1] // 2, r)
    b = _disc(shape, shape[0] // 2, shape[1] // 2 + r, r)  # overlaps A by about a third
    ids = {
        "alice": project.annotations.save_mask(image_id, tumour, a, annotator="alice"),
        "bob": project.annotations.save_mask(image_id, tumour, b, annotator="bob"),
    }
    window.actions_by_name["adjudicate"].trigger()  # Annotate › Adjudicate masks…
    return dock, dock.adjudication, project, image_id, tumour, a, b, ids


def _final(project, image_id, class_id):
    mask_id = project.annotations.find_mask(image_id, class_id, source="adjudicated")
    return project.annotations.load_mask(mask_id)


def test_view_shows_both_readers_with_agreement_and_decides(adjudication, qtbot):
    dock, view, project, image_id, tumour, a, b, ids = adjudication
    assert dock.tabs.currentWidget() is view and view.class_id() == tumour
    assert view.chosen() == (ids["alice"], ids["bob"])
    inter, union = int((a & b).sum()), int((a | b).sum())
    assert view.agreement["iou"] == pytest.approx(inter / union)
    assert view.agreement["dice"] == pytest.approx(2 * inter / (a.sum() + b.sum()))
    assert f"{inter / union:.3f}" in view.metrics.text()
    rgb = view.picture.rgb  # both outlines drawn in their own colours
    assert (rgb == COLOR_A).all(axis=2).any() and (rgb == COLOR_B).all(axis=2).any()
    assert all(b.isEnabled() for b in view.buttons.values())

    for button, expected in (("pick_b", b), ("union", a | b), ("intersection", a & b), ("pick_a", a)):
        qtbot.mouseClick(view.buttons[button], Qt.MouseButton.LeftButton)
        assert np.array_equal(_final(project, image_id, tumour), expected), button
    log = [json.loads(r["details"]) for r in project.audit_log(20) if r["action"] == "mask.adjudicate"]
    assert [d["method"] for d in log[:4]] == ["pick", "intersection", "union", "pick"]
    assert log[0]["pick"] == ids["alice"] and log[3]["pick"] == ids["bob"]
    assert log[0]["iou"] == pytest.approx(inter / union)
    assert "Final mask" in view.final.text()


def test_redraw_edits_the_final_mask_with_the_brush(adjudication, qtbot):
    dock, view, project, image_id, tumour, a, b, ids = adjudication
    ctl = dock.controller
    qtbot.mouseClick(view.buttons["redraw"], Qt.MouseButton.LeftButton)
    assert np.array_equal(_final(project, image_id, tumour), a)  # a copy of A to start from
    assert dock.tabs.currentWidget() is dock.panel and ctl.source == "adjudicated" and ctl.tool == "brush"
    assert dock.panel.back_btn.isVisibleTo(dock.panel) and np.array_equal(ctl.mask, a)
    ctl.set_radius(3)
    ctl.handle("press", (5, 5))
    ctl.handle("release", (5, 5))
    ctl.flush()
    final = _final(project, image_id, tumour)
    expected = a.copy()
    M.paint_disc(expected, 5, 5, 3)
    assert final[5, 5] and np.array_equal(final, expected)
    redraw = json.loads(next(r for r in project.audit_log(5) if r["action"] == "mask.adjudicate")["details"])
    assert redraw["method"] == "redraw"
    # The readers' masks are untouched; "Back to my mask" edits the user's own human mask again.
    assert np.array_equal(project.annotations.load_mask(ids["alice"]), a)
    qtbot.mouseClick(dock.panel.back_btn, Qt.MouseButton.LeftButton)
    assert ctl.source == "human" and not ctl.mask[5, 5]
    dock.show_tab("adjudicate")
    assert view.final_row().area_px == int(final.sum())

"""Boxes on the viewer, the Annotate dock's own undo, the polygon preview (issue 22, items 3-5).

Boxes were saved but never drawn (``set_boxes`` was never called with real data); the dock's
Undo was the window's ("Undo Split cluster into 2"); the polygon had no preview, Enter did
nothing and a click near an old first vertex closed an old polygon.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from mskstudio.gui.commands import SetFlagCommand

pytestmark = pytest.mark.gui


@pytest.fixture
def dock(window, qtbot):
    window.load_workspaces(entries=[], menus=[], docks=[
        ("Annotate", "mskstudio.gui.annotate.dock:AnnotateDock", Qt.DockWidgetArea.RightDockWidgetArea)])
    d = window.docks["Annotate"].view()
    qtbot.waitUntil(lambda: d.controller.image_id == window.image_id, timeout=10000)
    return d


def _view_point(viewer, x: float, y: float) -> QPoint:
    scene = viewer.canvas.mapToScene(QPointF(x, y))
    return viewer.view.mapFromScene(scene)


def _mouse(widget, kind, pos: QPoint, buttons) -> None:
    button = Qt.MouseButton.LeftButton if kind != QEvent.Type.MouseMove else Qt.MouseButton.NoButton
    ev = QMouseEvent(kind, QPointF(pos), QPointF(widget.mapToGlobal(pos)), button, buttons,
                     Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, ev)


def _drag(viewer, start, end, steps: int = 4) -> None:
    """A real left-button drag on the viewer (QTest.mouseMove carries no buttons in Qt 6)."""
    vp = viewer.view.viewport()
    a, b = _view_point(viewer, *start), _view_point(viewer, *end)
    held = Qt.MouseButton.LeftButton
    _mouse(vp, QEvent.Type.MouseButtonPress, a, held)
    for i in range(1, steps + 1):
        p = QPoint(round(a.x() + (b.x() - a.x()) * i / steps), round(a.y() + (b.y() - a.y()) * i / steps))
        QTest.qWait(25)  # pyqtgraph drops mouse moves faster than the screen refresh
        _mouse(vp, QEvent.Type.MouseMove, p, held)
    _mouse(vp, QEvent.Type.MouseButtonRelease, b, Qt.MouseButton.NoButton)


def _rect(project, box_id):
    return project.annotations.box(box_id).rect


def test_boxes_of_every_source_are_drawn_moved_resized_and_deleted(window, qtbot):
    p, v, image_id = window.project, window.viewer, window.image_id
    cls = p.annotations.classes()[0].id
    ids = {src: p.annotations.add_box(image_id, cls, rect, source=src) for src, rect in
           (("human", (20, 20, 80, 70)), ("import", (100, 30, 160, 90)), ("model", (30, 100, 90, 150)))}
    window.open_image(image_id)
    # Let the store watch report the three new boxes now (its refresh redraws them), so that
    # refresh cannot land in the middle of the drags below on a slow machine.
    window.store_watch.poll()
    qtbot.wait(50)
    shown = {b.box_id: b for b in v.stored_boxes()}
    assert set(shown) == set(ids.values()), "every stored box is drawn, whatever its source"
    styles = {shown[ids[s]].pen.style() for s in ids}
    assert len(styles) == 3, "the line style tells a person's box from an imported or a model's"

    w0 = _rect(p, ids["human"])
    _drag(v, (50, 45), (60, 55))  # grab the box in its middle
    moved = _rect(p, ids["human"])
    assert moved[0] - w0[0] == pytest.approx(10, abs=2.5) and moved[1] - w0[1] == pytest.approx(10, abs=2.5)
    assert moved[2] - moved[0] == pytest.approx(60, abs=0.5), "a move keeps the size"
    assert window.undo_stack.undoText() == "Move box"

    item = next(b for b in v.stored_boxes() if b.box_id == ids["human"])
    corner = (moved[2], moved[3])  # the scale handle at the bottom-right corner
    _drag(v, corner, (corner[0] + 15, corner[1] + 12))
    resized = _rect(p, ids["human"])
    assert resized[2] - resized[0] == pytest.approx(75, abs=3) and resized[:2] == pytest.approx(moved[:2])
    assert window.undo_stack.undoText() == "Resize box"
    window.undo_stack.undo()
    assert _rect(p, ids["human"]) == pytest.approx(moved)

    item = next(b for b in v.stored_boxes() if b.box_id == ids["import"])
    v.select_box(item)
    QTest.keyClick(v, Qt.Key.Key_Delete)
    assert p.annotations.box(ids["import"]) is None
    assert len(v.stored_boxes()) == 2
    window.undo_stack.undo()  # the imported box comes back, imported
    assert sorted(b.row.source for b in v.stored_boxes()) == ["human", "import", "model"]


def test_box_tool_shows_live_size_and_draws_the_new_box(window, dock, qtbot):
    ctl, p, v = dock.controller, window.project, window.viewer
    ctl.set_tool("box")
    ctl.handle("press", (10, 10))
    ctl.handle("move", (60, 40))
    text = dock.panel.size_label.text()
    assert not ctl.draft.path().isEmpty()
    row = p.images.record(window.image_id)
    w_mm = 50 * row.spacing_col_mm
    assert f"{w_mm:.1f} ×" in text and "mm" in text
    ctl.handle("release", (60, 40))
    assert ctl.draft.path().isEmpty()
    assert [b.rect_xyxy() for b in v.stored_boxes()] == [pytest.approx((10, 10, 60, 40))]


def test_box_from_mask_and_the_docks_undo_is_the_annotation_undo(window, dock, qtbot):
    ctl, p, image_id = dock.controller, window.project, window.image_id
    panel = dock.panel
    ctl.set_tool("brush")
    ctl.set_radius(5)
    ctl.handle("press", (40, 40))
    ctl.handle("move", (60, 50))
    ctl.handle("release", (60, 50))
    assert "Lesion: longest" in panel.size_label.text()
    ctl.set_tool(None)  # no tool: the window's Edit › Undo now means project edits
    window.undo_stack.push(SetFlagCommand(p, [image_id], "excluded", True))
    assert panel.undo_action.text() == "Undo Brush", panel.undo_action.text()

    panel.box_from_mask_btn.click()
    boxes = p.annotations.boxes_of(image_id)
    mask = ctl.mask
    ys, xs = np.nonzero(mask)
    assert [b.rect for b in boxes] == [
        (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)]
    assert panel.undo_action.text() == "Undo Box from mask"

    panel.undo_action.trigger()
    assert not p.annotations.boxes_of(image_id)
    panel.undo_action.trigger()
    ctl.flush()
    assert not ctl.mask.any(), "the dock's Undo took back the stroke"
    assert p.images.record(image_id).excluded is True, "... and never the project edit"
    assert not panel.undo_action.isEnabled()


def test_polygon_preview_enter_closes_and_a_new_polygon_starts_anywhere(window, dock, qtbot):
    ctl, v = dock.controller, window.viewer
    ctl.set_tool("polygon")
    for pt in ((20, 20), (80, 20), (80, 70)):
        ctl.handle("press", pt)
    assert len(ctl.draft.vertices) == 3 and not ctl.draft.path().isEmpty()
    ctl.handle("hover", (30, 75))  # the rubber band follows the cursor
    assert ctl.draft.path().elementCount() == 4
    assert "Outline: longest" in dock.panel.size_label.text()
    v.view.setFocus()
    QTest.keyClick(v.view, Qt.Key.Key_Return)
    assert not ctl._points and ctl.draft.path().isEmpty()
    filled = int(ctl.mask.sum())
    assert filled > 1000
    assert window.viewer.tool == "pan"

    ctl.handle("press", (21, 21))  # near the old first vertex: a new polygon starts there
    assert ctl._points == [(21, 21)] and int(ctl.mask.sum()) == filled
    ctl.handle("press", (60, 100))
    ctl.handle("press", (10, 100))
    QTest.keyClick(v.view, Qt.Key.Key_Escape)  # Esc drops the outline, nothing saved
    assert not ctl._points and int(ctl.mask.sum()) == filled

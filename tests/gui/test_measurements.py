"""Measurements are saved per image: drawn, reopened, dragged, deleted, undone, listed in the case panel."""

from __future__ import annotations

import math

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest

pytestmark = pytest.mark.gui

NO_MOD = Qt.KeyboardModifier.NoModifier
LEFT = Qt.MouseButton.LeftButton


def _on_screen(v, x: float, y: float) -> QPoint:
    """Viewport position of image pixel (x, y), whatever the zoom and display rotation."""
    return v.view.mapFromScene(v.canvas.mapToScene(QPointF(x, y)))


def _drag(vp, a: QPoint, b: QPoint, steps: int = 6, check_midway=None) -> None:
    QTest.mousePress(vp, LEFT, NO_MOD, a)
    for k in range(1, steps + 1):
        QTest.mouseMove(vp, a + (b - a) * (k / steps))
        if k == steps // 2 and check_midway:
            check_midway()
    QTest.mouseRelease(vp, LEFT, NO_MOD, b)


def _saved(w):
    return w.project.measurements.for_image(w.image_id)


@pytest.mark.parametrize("spacing_source, expected_source",
                         [("pixel", "PixelSpacing"), ("imager_corrected", "estimated")])
def test_ruler_is_saved_and_comes_back(qtbot, window, spacing_source, expected_source):
    w, v = window, window.viewer
    # phantoms carry PixelSpacing, or (CR) ImagerPixelSpacing with a magnification estimate
    image_id = w.project.db.scalar("SELECT id FROM images WHERE spacing_source = ? ORDER BY id", (spacing_source,))
    w.open_image(image_id)
    qtbot.waitUntil(lambda: v.rad is not None, timeout=15000)
    row = v.row
    w.actions_by_name["tool_ruler"].trigger()
    vp = v.view.viewport()
    a, b = vp.rect().center() - QPoint(80, 40), vp.rect().center() + QPoint(70, 30)
    _drag(vp, a, b)
    (m,) = _saved(w)
    (item,) = v.measurements
    assert item.measurement_id == m["id"] and m["kind"] == "ruler"
    assert m["author"] == "tester" and m["spacing_source"] == expected_source
    (x0, y0), (x1, y1) = m["points"]
    assert (x0, y0) == pytest.approx(v.to_image(v.view.mapToScene(a)), abs=2)
    assert m["length_px"] == pytest.approx(math.hypot(x1 - x0, y1 - y0))
    assert m["length_mm"] == pytest.approx(math.hypot((x1 - x0) * row.spacing_col_mm,
                                                      (y1 - y0) * row.spacing_row_mm))
    assert item.text() == f"{'≈' if expected_source == 'estimated' else ''}{m['length_mm']:.1f} mm"
    # another image shows none; coming back shows it again, where it was
    first = w.image_id
    w.actions_by_name["next"].trigger()
    assert w.image_id != first
    assert [x.measurement_id for x in v.measurements] == [x["id"] for x in _saved(w)] == []
    w.open_image(first)
    (back,) = v.measurements
    assert back.measurement_id == m["id"] and back.points == m["points"]
    # undo takes it out of the project and off the image, redo brings the same one back
    w.actions_by_name["undo"].trigger()
    assert _saved(w) == [] and v.measurements == []
    w.actions_by_name["redo"].trigger()
    assert [x["id"] for x in _saved(w)] == [m["id"]] and v.measurements[0].measurement_id == m["id"]


def test_angle_by_three_clicks(qtbot, window):
    w, v = window, window.viewer
    w.actions_by_name["tool_angle"].trigger()
    vp = v.view.viewport()
    rows, cols = v.row.rows, v.row.cols
    for x, y in [(cols * 0.3, rows * 0.3), (cols * 0.5, rows * 0.5), (cols * 0.7, rows * 0.3)]:
        QTest.mouseClick(vp, LEFT, NO_MOD, _on_screen(v, x, y))
    (m,) = _saved(w)
    assert m["kind"] == "angle" and len(m["points"]) == 3
    assert m["angle_deg"] == pytest.approx(v.measurements[0].degrees)
    assert 0 < m["angle_deg"] < 180


def test_dragging_an_endpoint_saves_at_the_end_and_undoes(qtbot, window):
    w, v = window, window.viewer
    rows, cols = v.row.rows, v.row.cols
    start = [(cols * 0.3, rows * 0.4), (cols * 0.6, rows * 0.4)]
    m = v.add_ruler(*start)
    mid = m.measurement_id
    before = w.project.measurements.get(mid)
    vp = v.view.viewport()
    target = (cols * 0.6, rows * 0.7)

    def still_saved_as_before():
        assert w.project.measurements.get(mid)["points"] == before["points"]  # saved at drag end only
        assert m.points[1] != before["points"][1]  # but drawn live

    _drag(vp, _on_screen(v, *start[1]), _on_screen(v, *target), check_midway=still_saved_as_before)
    after = w.project.measurements.get(mid)
    assert after["points"][0] == before["points"][0]
    assert after["points"][1] == pytest.approx(target, abs=2)
    sr, sc = v.row.spacing_row_mm, v.row.spacing_col_mm
    (x0, y0), (x1, y1) = after["points"]
    assert after["length_mm"] == pytest.approx(math.hypot((x1 - x0) * sc, (y1 - y0) * sr))
    assert v.selected_measurement is m and m.selected
    audit = w.project.db.one("SELECT * FROM audit WHERE action = 'measurement.move' ORDER BY id DESC")
    assert audit["entity_id"] == mid
    w.undo_stack.undo()
    assert w.project.measurements.get(mid)["points"] == before["points"]
    assert v.measurements[0].points == before["points"]


def test_delete_key_context_menu_and_undo(qtbot, window):
    w, v = window, window.viewer
    rows, cols = v.row.rows, v.row.cols
    keep = v.add_ruler((cols * 0.2, rows * 0.2), (cols * 0.4, rows * 0.2))
    doomed = v.add_ruler((cols * 0.2, rows * 0.6), (cols * 0.5, rows * 0.7))
    vp = v.view.viewport()
    # a click on an endpoint selects the measurement without moving it
    QTest.mouseClick(vp, LEFT, NO_MOD, _on_screen(v, *doomed.points[0]))
    assert v.selected_measurement is doomed and not keep.selected
    v.view.setFocus()
    QTest.keyClick(v.view, Qt.Key.Key_Delete)
    assert [x["id"] for x in _saved(w)] == [keep.measurement_id]
    assert [x.measurement_id for x in v.measurements] == [keep.measurement_id]
    w.undo_stack.undo()
    assert len(_saved(w)) == 2 and doomed.measurement_id in {x.measurement_id for x in v.measurements}
    # the context menu offers deleting one or all; "all" is one undo step
    from mskstudio.gui.viewer.tools import measurement_menu

    menu = measurement_menu(v, v.measurements[0])
    actions = {a.text(): a for a in menu.actions()}
    assert "Delete measurement" in actions
    actions["Delete all measurements on this image"].trigger()
    assert _saved(w) == [] and v.measurements == []
    w.undo_stack.undo()
    assert len(_saved(w)) == 2 and len(v.measurements) == 2


def test_case_panel_lists_and_deletes_measurements(qtbot, window):
    w, v, panel = window, window.viewer, window.case_panel
    rows, cols = v.row.rows, v.row.cols
    ruler = v.add_ruler((cols * 0.1, rows * 0.1), (cols * 0.1, rows * 0.5))
    v.add_angle((0, 10), (0, 0), (10, 0))
    table = panel.measures
    assert table.rowCount() == 2
    cells = [table.item(0, c).text() for c in range(table.columnCount())]
    assert cells[1] == "ruler" and cells[2] == ruler.text() and f"{ruler.mm:.1f} mm" in cells[2]
    assert cells[4] == ruler.source != "none"
    assert cells[3] == f"{ruler.points[1][1] - ruler.points[0][1]:.1f} px"  # a vertical ruler
    assert cells[5] == "tester"
    assert "Measurements (2)" in [panel.tabs.tabText(i) for i in range(panel.tabs.count())]
    table.selectRow(0)
    panel.delete_measure.click()
    assert [x.kind for x in v.measurements] == ["angle"] and table.rowCount() == 1
    w.undo_stack.undo()
    assert table.rowCount() == 2 and len(v.measurements) == 2


def test_read_only_project_draws_without_saving(qtbot, window):
    w, v = window, window.viewer
    w.project.readonly = True
    m = v.add_ruler((0, 0), (30, 40))
    assert m.measurement_id is None and m in v.measurements
    assert w.project.db.scalar("SELECT COUNT(*) FROM measurements") == 0
    assert w.undo_stack.count() == 0

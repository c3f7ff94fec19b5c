"""Browsing and the viewer: selection, window/level, measurement, overlays, display transforms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest

pytestmark = pytest.mark.gui


def _wait_full(qtbot, w, image_id):
    qtbot.waitUntil(lambda: w.viewer.rad is not None and w.viewer.image_id == image_id, timeout=15000)


def test_grid_and_tree_selection_open_the_image(qtbot, window):
    w = window
    b = w.browser
    assert b.model.rowCount() == len(b.order) > 10
    target = b.order[5]
    with qtbot.waitSignal(w.image_changed, timeout=5000) as sig:
        b.grid.setCurrentIndex(b.model.index(5))
    assert sig.args == [target]
    _wait_full(qtbot, w, target)
    row = w.project.images.get(target)
    assert w.viewer.rad.modality.shape == (row["rows"], row["cols"])
    assert w.case_panel.image_id == target
    # the tree followed the grid; choosing another leaf in the tree opens that image
    other = b.order[0]
    b.select_image(other)
    leaf = b.tree.currentItem()
    assert leaf.data(0, Qt.ItemDataRole.UserRole) == ("image", other)
    b.tree.setCurrentItem(None)
    b.tree.setCurrentItem(leaf)
    assert w.image_id == other


def test_thumbnails_load_lazily(qtbot, window):
    m = window.browser.model
    m.cache.clear()
    m.data(m.index(0), Qt.ItemDataRole.DecorationRole)
    assert m.pending() >= 1
    qtbot.waitUntil(lambda: m.ids[0] in m.cache, timeout=3000)
    assert m.cache[m.ids[0]].width() > 1


def test_filters_and_search(qtbot, window):
    b = window.browser
    total = len(b.order)
    pseudo = b.rows[0]["pseudonym"]
    b.search.setText(pseudo[:6])
    assert 0 < len(b.order) < total
    assert all(r["pseudonym"].startswith(pseudo[:6]) for r in b.visible_rows)
    b.search.clear()
    assert len(b.order) == total
    if b.view_filter.count() > 1:
        b.view_filter.setCurrentIndex(1)
        view = b.view_filter.currentText()
        assert all(r["view"] == view for r in b.visible_rows)
        b.view_filter.setCurrentIndex(0)


def test_next_previous_and_keyboard(qtbot, window):
    w = window
    first = w.image_id
    assert first == w.browser.order[0]
    w.actions_by_name["next"].trigger()
    assert w.image_id == w.browser.order[1]
    w.actions_by_name["previous"].trigger()
    assert w.image_id == first
    w.viewer.view.setFocus()
    QTest.keyClick(w.viewer.view, Qt.Key.Key_PageDown)
    assert w.image_id == w.browser.order[1]


def test_window_level_presets_and_drag(qtbot, window):
    v = window.viewer
    before = tuple(v.img.levels)
    lo, hi = v.window_levels()
    assert math.isclose(hi - lo, v.window.width, rel_tol=1e-6)
    # the item shows the 16-bit image with the window as its levels
    assert (v._offset + v._scale * before[0], v._offset + v._scale * before[1]) == pytest.approx((lo, hi))
    window.actions_by_name["preset2"].trigger()  # bone
    bone = tuple(v.img.levels)
    assert bone != before and v.window.explanation == "bone"
    window.actions_by_name["preset5"].trigger()  # full range
    assert v.window_levels()[0] == pytest.approx(float(v.rad.modality.min()))
    assert v.img.levels[0] == pytest.approx((v.window_levels()[0] - v._offset) / v._scale)
    # right-drag changes window (width) and level (center) with live feedback
    w0, c0 = v.window.width, v.window.center
    vp = v.view.viewport()
    center = vp.rect().center()
    QTest.mousePress(vp, Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier, center)
    for k in range(1, 6):
        QTest.mouseMove(vp, center + QPoint(20 * k, 10 * k))
    QTest.mouseRelease(vp, Qt.MouseButton.RightButton, Qt.KeyboardModifier.NoModifier,
                       center + QPoint(100, 50))
    assert v.window.width > w0 and v.window.center > c0
    assert v.window.explanation == "manual"
    assert f"W {v.window.width:.0f}" in v.corner_bl.text()
    inv = v.display_invert
    window.actions_by_name["invert"].trigger()
    assert v.display_invert != inv


def test_ruler_measures_millimetres(qtbot, window):
    v = window.viewer
    row = v.row
    sr, sc = row["spacing_row_mm"], row["spacing_col_mm"]
    assert sr and sc, "phantom images carry pixel spacing"
    m = v.add_ruler((10, 20), (110, 60))
    expected = math.hypot(100 * sc, 40 * sr)
    assert m.mm == pytest.approx(expected)
    assert f"{expected:.1f} mm" in m.text()
    # the same with the mouse, ruler tool: press-drag-release on the image
    window.actions_by_name["tool_ruler"].trigger()
    vp = v.view.viewport()
    a, b = vp.rect().center() - QPoint(60, 30), vp.rect().center() + QPoint(60, 30)
    QTest.mousePress(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, a)
    for k in range(1, 7):
        QTest.mouseMove(vp, a + (b - a) * (k / 6))
    QTest.mouseRelease(vp, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b)
    assert len(v.measurements) == 2
    drawn = v.measurements[-1]
    (x0, y0), (x1, y1) = drawn.points
    pa = v.to_image(v.view.mapToScene(a))
    assert (x0, y0) == pytest.approx(pa, abs=2)
    assert drawn.mm == pytest.approx(math.hypot((x1 - x0) * sc, (y1 - y0) * sr))
    ang = v.add_angle((0, 0), (10, 10), (20, 0))
    if sr == sc:
        assert ang.degrees == pytest.approx(90.0)
    window.actions_by_name["clear_measurements"].trigger()
    assert v.measurements == []


def test_spacing_warning(qtbot, window):
    v = window.viewer
    w = window
    w.project.db.execute("UPDATE images SET spacing_source = 'imager' WHERE id = ?", (w.image_id,))
    w.open_image(w.image_id)
    assert "estimates" in v.warning.text()
    assert v.add_ruler((0, 0), (10, 0)).text().startswith("≈")
    w.project.db.execute("UPDATE images SET spacing_row_mm = NULL, spacing_col_mm = NULL, "
                         "spacing_source = NULL WHERE id = ?", (w.image_id,))
    w.open_image(w.image_id)
    assert "no pixel spacing" in v.warning.text()
    assert v.add_ruler((0, 0), (10, 0)).text() == "10.0 px"


def test_readout_rotation_and_zoom(qtbot, window):
    v = window.viewer
    rows, cols = v.row["rows"], v.row["cols"]
    c, r = cols // 4, rows * 3 // 4
    x, y = v.to_image(v.canvas.mapToScene(QPointF(c + 0.5, r + 0.5)))
    assert (int(x), int(y)) == (c, r)
    text = v.readout(x, y)
    value = float(v.rad.modality[int(y), int(x)])
    assert f"value {value:.1f}" in text and "mm" in text
    window.actions_by_name["rotate_right"].trigger()
    assert v.to_image(v.canvas.mapToScene(QPointF(x, y))) == pytest.approx((x, y))
    r = v.image_rect_in_view()
    assert r.width() == pytest.approx(rows) and r.height() == pytest.approx(cols)
    window.actions_by_name["flip_h"].trigger()
    window.actions_by_name["actual_size"].trigger()
    assert v.zoom_factor() == pytest.approx(1.0, rel=0.05)
    window.actions_by_name["fit"].trigger()


def test_overlay_api(qtbot, window):
    v = window.viewer
    rows, cols = v.row["rows"], v.row["cols"]
    heat = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    v.set_overlay("heatmap", heat, 0.4)
    mask = np.zeros((rows, cols), bool)
    mask[10:50, 10:50] = True
    v.set_overlay("mask", mask, 0.6)
    v.set_boxes([{"x0": 5, "y0": 5, "x1": 60, "y1": 40, "label": "lesion"}])
    assert v.overlay_visible("heatmap") and v.overlay_visible("mask") and v.overlay_visible("boxes")
    assert v.overlays["heatmap"].opacity() == pytest.approx(0.4)
    # the 64x64 heat map is stretched over the whole image
    br = v.overlays["heatmap"].mapRectToParent(v.overlays["heatmap"].boundingRect())
    assert (br.width(), br.height()) == pytest.approx((cols, rows))
    v.overlay_visible("mask", False)
    assert not v.overlay_visible("mask")
    window.actions_by_name["toggle_overlays"].trigger()
    assert not v.overlay_visible("heatmap") and not v.overlay_visible("boxes")
    window.actions_by_name["toggle_overlays"].trigger()
    assert v.overlay_visible("heatmap")
    v.set_overlay("heatmap", None)
    assert "heatmap" not in v.overlays


def test_thumbnail_first_then_full_image(qtbot, window):
    w = window
    target = w.browser.order[3]
    w.open_image(target)
    # at once: the thumbnail, stretched over the image's full size
    assert w.viewer.image_id == target
    if w.viewer.rad is None:
        rect = w.viewer.img.mapRectToParent(w.viewer.img.boundingRect())
        assert (rect.width(), rect.height()) == pytest.approx((w.viewer.row["cols"], w.viewer.row["rows"]))
        assert "loading" in w.viewer.corner_bl.text()
    _wait_full(qtbot, w, target)
    v = w.viewer
    assert v.img.image.dtype == np.uint16
    # full bit depth: the displayed array maps back to the modality values exactly
    assert np.allclose(v._offset + v._scale * v._pyramid[1].astype(np.float64), v.rad.modality, atol=v._scale)

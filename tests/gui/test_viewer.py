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


def _reference(w):
    """The float decode of the window's image, independent of the viewer's display path."""
    from mskstudio.io.dicom import read_radiograph

    return read_radiograph(w.project.images.dicom_path(w.image_id), frame=int(w.viewer.row.frame or 0))


def test_grid_and_tree_selection_open_the_image(qtbot, window):
    w = window
    b = w.browser
    assert b.model.rowCount() == len(b.order) > 10
    target = b.order[5]
    with qtbot.waitSignal(w.image_changed, timeout=5000) as sig:
        b.grid.setCurrentIndex(b.model.index(5))
    assert sig.args == [target]
    _wait_full(qtbot, w, target)
    assert w.viewer.rad.shape == w.project.images.record(target).shape
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
    assert v.window_levels()[0] == pytest.approx(float(_reference(window).modality.min()))
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
    sr, sc = row.spacing_row_mm, row.spacing_col_mm
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
    window.actions_by_name["delete_measurements"].trigger()  # one undoable step
    assert v.measurements == [] and window.project.measurements.for_image(window.image_id) == []
    window.undo_stack.undo()
    assert len(v.measurements) == len(window.project.measurements.for_image(window.image_id)) > 0


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


def test_corner_text_never_overlaps_in_a_narrow_viewer(qtbot, window):
    v = window.viewer
    _wait_full(qtbot, window, window.image_id)
    v.corner_br.setText(v.readout(v.row.cols / 2, v.row.rows / 2))
    v.warning.setText(v.spacing_warning() or "⚠ no pixel spacing: measurements in pixels")
    labels = [v.corner_tl, v.corner_tr, v.corner_bl, v.corner_br, v.warning]
    assert all(label.text() for label in labels)
    for width, side_by_side in ((1400, True), (200, False), (1400, True)):  # and back: unwrapped
        v.view.resize(width, 700)
        v._place_corners()
        rects = [label.geometry() for label in labels]
        overlaps = [(a, b) for a in range(5) for b in range(a + 1, 5) if rects[a].intersects(rects[b])]
        assert overlaps == [], (width, overlaps)
        assert (v.corner_tr.y() == v.corner_tl.y()) is side_by_side
        assert all(r.left() >= 0 and r.right() < width for r in rects)  # wrapped, not cut
        assert any(label.wordWrap() for label in labels) is not side_by_side  # 1400 px: one line each


def test_readout_rotation_and_zoom(qtbot, window):
    v = window.viewer
    rows, cols = v.row.rows, v.row.cols
    c, r = cols // 4, rows * 3 // 4
    x, y = v.to_image(v.canvas.mapToScene(QPointF(c + 0.5, r + 0.5)))
    assert (int(x), int(y)) == (c, r)
    text = v.readout(x, y)
    value = float(_reference(window).modality[int(y), int(x)])
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
    rows, cols = v.row.rows, v.row.cols
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
        assert (rect.width(), rect.height()) == pytest.approx((w.viewer.row.cols, w.viewer.row.rows))
        assert "loading" in w.viewer.corner_bl.text()
    _wait_full(qtbot, w, target)
    v = w.viewer
    assert v.img.image.dtype == np.uint16
    # full bit depth: the displayed array maps back to the modality values exactly
    assert np.allclose(v._offset + v._scale * v._pyramid[1].astype(np.float64), _reference(w).modality,
                       atol=v._scale)


def test_display_pyramid_levels_are_rounded_block_means():
    """The worker-built pyramid: each level the rounded 2×2 mean of the one above (odd edges repeated)."""
    from mskstudio.gui.viewer.image_loader import PYRAMID_MIN_SIDE, display_pyramid, halve_u16

    rng = np.random.default_rng(3)
    a = rng.integers(0, 65536, (37, 50), dtype=np.uint16)
    padded = np.pad(a.astype(np.float64), ((0, 1), (0, 0)), mode="edge")
    expected = np.floor(padded.reshape(19, 2, 25, 2).mean(axis=(1, 3)) + 0.5)
    assert np.array_equal(halve_u16(a), expected.astype(np.uint16))
    full = rng.integers(0, 4096, (1500, 700), dtype=np.uint16)
    levels = display_pyramid(full)
    assert sorted(levels) == [1, 2, 4, 8] and levels[1] is full
    assert max(levels[8].shape) <= PYRAMID_MIN_SIDE < max(levels[4].shape)
    assert all(np.array_equal(levels[f * 2], halve_u16(levels[f])) for f in (1, 2, 4))
    # values known to stay below 2**14 are summed in uint16: the same means, up to the top value
    narrow = rng.integers(16000, 16384, (41, 60), dtype=np.uint16)
    narrow[:2, :2] = 16383
    assert np.array_equal(halve_u16(narrow, top=16383), halve_u16(narrow)) and halve_u16(narrow, 16383)[0, 0] == 16383
    assert all(np.array_equal(a, b) for a, b in zip(display_pyramid(full, top=4095).values(), levels.values(),
                                                     strict=True))


# ---- the stored-integer display path ---------------------------------------------------------
def _synthetic_path(tmp_path, values: np.ndarray, **attrs):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), "CR"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = values.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 1 if values.dtype.kind == "i" else 0
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.PixelData = values.astype(values.dtype.newbyteorder("<")).tobytes()
    path = tmp_path / "x.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def _stored_12bit() -> np.ndarray:
    """A 12-bit radiograph-like image (a smooth ramp plus noise), 1100x900: sampled with stride 2."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:1100, 0:900]
    img = 600 + 2.5 * xx + 0.8 * yy + rng.normal(0, 40, yy.shape)
    return np.clip(np.round(img), 0, 4095).astype(np.uint16)


DISPLAY_CASES = {
    "monochrome2 with a stored window": lambda v: dict(values=v, WindowCenter=1800, WindowWidth=1200),
    "monochrome1": lambda v: dict(values=(4095 - v).astype(np.uint16), PhotometricInterpretation="MONOCHROME1"),
    "signed": lambda v: dict(values=(v.astype(np.int32) - 2048).astype(np.int16)),
    "rescaled": lambda v: dict(values=v, RescaleSlope=0.25, RescaleIntercept=-1000),
    "decreasing rescale": lambda v: dict(values=v, RescaleSlope=-2, RescaleIntercept=8190),
}


def _assert_same_display(fast, slow, modality: np.ndarray) -> None:
    """The stored-integer products ``fast`` against the float path's ``slow`` for one image."""
    def back(d, level):  # modality values of one pyramid level
        return d.offset + d.scale * d.pyramid[level].astype(np.float64)

    assert fast.rad.exact is None and slow.rad.exact is not None  # each went its own path
    assert fast.scale > 0 and sorted(fast.pyramid) == sorted(slow.pyramid)
    # the display maps back to the modality image exactly (float32 rounding aside) ...
    np.testing.assert_allclose(back(fast, 1), modality, rtol=1e-6, atol=1e-3)
    # ... and shows what the float path shows: the same integers where the float path is
    # exact (unit scale); else the float path's quantisation differs, and each halving rounds
    # the block means to each path's own display unit (half a unit per halving, at most)
    exact = slow.scale == fast.scale == 1.0
    for level in fast.pyramid:
        halvings = level.bit_length() - 1
        atol = 1e-3 if exact else slow.scale + halvings * (fast.scale + slow.scale) / 2
        np.testing.assert_allclose(back(fast, level), back(slow, level), rtol=1e-6, atol=atol)
    if exact:
        assert np.array_equal(fast.pyramid[1].astype(np.int64) - slow.pyramid[1], np.full(modality.shape,
                              round(slow.offset - fast.offset)))
    assert [name for name, _ in fast.presets] == [name for name, _ in slow.presets]
    for (_, a), (_, b) in zip(fast.presets, slow.presets, strict=True):
        assert a.explanation == b.explanation
        assert (a.center, a.width) == pytest.approx((b.center, b.width), rel=1e-6, abs=1e-3)
    assert fast.rad.invert == slow.rad.invert and fast.rad.default_window() == pytest.approx(
        slow.rad.default_window())
    # readout and crops come from the display array, one value or one region at a time
    r, c = modality.shape[0] // 3, modality.shape[1] // 2
    assert fast.rad.modality_at(r, c) == pytest.approx(float(modality[r, c]), rel=1e-6, abs=1e-3)
    np.testing.assert_allclose(fast.rad.modality_region(5, 40, 7, 30), modality[5:40, 7:30], rtol=1e-6, atol=1e-3)
    crop = fast.rad.region(5, 40, 7, 30)
    window = fast.presets[1][1]
    assert np.abs(crop.render_u8(window).astype(int) - slow.rad.region(5, 40, 7, 30).render_u8(window)).max() <= 1


@pytest.mark.parametrize("case", list(DISPLAY_CASES))
def test_stored_integer_display_matches_float_path(tmp_path, case):
    from mskstudio.gui.viewer.image_loader import decode_for_display, prepare_display
    from mskstudio.io.dicom import read_radiograph

    attrs = DISPLAY_CASES[case](_stored_12bit())
    path = _synthetic_path(tmp_path, attrs.pop("values"), **attrs)
    rad = read_radiograph(path)
    _assert_same_display(decode_for_display(path), prepare_display(rad), rad.modality)


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm"])
def test_stored_integer_display_of_pydicom_files(name):
    """Signed CT with an intercept, and compressed grey files (decoded to integers, then the same path)."""
    from pydicom.data import get_testdata_file

    from mskstudio.gui.viewer.image_loader import decode_for_display, prepare_display
    from mskstudio.io.dicom import read_radiograph

    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not among pydicom's installed test files")
    rad = read_radiograph(path)
    _assert_same_display(decode_for_display(path), prepare_display(rad), rad.modality)


def test_colour_images_take_the_float_path():
    from pydicom.data import get_testdata_file

    from mskstudio.gui.viewer.image_loader import decode_for_display
    from mskstudio.gui.viewer.tools import to_display_u16, window_presets
    from mskstudio.io.dicom import read_radiograph

    path = get_testdata_file("SC_rgb_rle.dcm", download=False)
    if path is None:
        pytest.skip("SC_rgb_rle.dcm is not among pydicom's installed test files")
    rad = read_radiograph(path)
    shown = decode_for_display(path)
    assert shown.rad.exact is not None and np.array_equal(shown.rad.exact, rad.modality)
    assert shown.presets == window_presets(rad)
    full, offset, scale = to_display_u16(rad.modality)
    assert np.array_equal(shown.pyramid[1], full) and (shown.offset, shown.scale) == (offset, scale)
    assert shown.rad.modality_at(3, 4) == float(rad.modality[3, 4])

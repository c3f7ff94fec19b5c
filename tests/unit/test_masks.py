"""Mask painting primitives, undo diffs and codecs (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from mskstudio.imaging import masks as M


def test_paint_disc_matches_formula_and_dirty_rect():
    m = np.zeros((100, 120), bool)
    rect = M.paint_disc(m, 50, 40, 10)
    yy, xx = np.mgrid[:100, :120]
    expected = (xx - 50) ** 2 + (yy - 40) ** 2 <= 100
    assert np.array_equal(m, expected)
    x0, y0, x1, y1 = rect
    assert not m[:, :x0].any() and not m[:, x1:].any() and not m[:y0].any() and not m[y1:].any()
    assert M.paint_disc(m, 50, 40, 10, False) == rect and not m.any()
    # Off the image: clipped, never raising.
    assert M.paint_disc(m, -50, -50, 5) is None
    assert M.paint_disc(m, 0, 0, 5) == (0, 0, 6, 6) and m[0, 0]


def test_polygon_fill_and_lasso():
    m = np.zeros((50, 60), bool)
    rect = M.fill_polygon(m, [(10, 5), (30, 5), (30, 25), (10, 25)])
    assert m[5:26, 10:31].all() and m.sum() == 21 * 21
    assert rect == (10, 5, 31, 26)
    tri = np.zeros((50, 60), bool)
    M.lasso(tri, [(0, 0), (40, 0), (0, 40)])
    # Inside / outside the triangle x + y <= 40.
    assert tri[5, 5] and tri[0, 39] and not tri[30, 30]
    assert M.fill_polygon(m, []) is None


def test_flood_fill_closed_outline():
    m = np.zeros((60, 60), bool)
    yy, xx = np.mgrid[:60, :60]
    ring = np.abs(np.hypot(xx - 30, yy - 30) - 15) < 1.2
    m[ring] = True
    outline = m.copy()
    rect = M.flood_fill(m, 30, 30)
    inside = np.hypot(xx - 30, yy - 30) < 13.5
    assert m[inside].all()
    assert not m[np.hypot(xx - 30, yy - 30) > 17].any()  # did not leak outside
    assert rect is not None and rect[0] >= 13 and rect[2] <= 47
    assert (m & ~outline).sum() > 0.9 * inside.sum()
    # Filling an already filled pixel changes nothing.
    assert M.flood_fill(m, 30, 30) is None
    # Eraser flood: clear the filled disc + ring (one 4-connected region).
    M.flood_fill(m, 30, 30, False)
    assert not m.any()


def test_diff_apply_revert_roundtrip():
    rng = np.random.default_rng(0)
    m = np.zeros((300, 400), bool)
    history, states = [], [m.copy()]
    for _ in range(30):
        rec = M.StrokeRecorder(m)
        x, y = rng.uniform(0, 400), rng.uniform(0, 300)
        for _ in range(5):
            x2, y2 = x + rng.normal(0, 15), y + rng.normal(0, 15)
            rec.line((x, y), (x2, y2), 8, bool(rng.random() < 0.8))
            x, y = x2, y2
        # A polygon in the same stroke: its rect is recorded before filling.
        poly = [(x, y), (x + 20, y), (x + 10, y + 25)]
        rec.touch((int(x) - 1, int(y) - 1, int(x) + 22, int(y) + 27))
        M.fill_polygon(m, poly)
        d = rec.finish()
        if d is not None:
            history.append(d)
            states.append(m.copy())
    assert history
    for d, before in zip(reversed(history), reversed(states[:-1]), strict=True):
        d.revert(m)
        assert np.array_equal(m, before)
    for d, after in zip(history, states[1:], strict=True):
        d.apply(m)
        assert np.array_equal(m, after)


def test_diff_between_is_tight():
    a = np.zeros((100, 100), bool)
    b = a.copy()
    b[10:20, 30:35] = True
    d = M.MaskDiff.between(a, b)
    assert d.rect == (30, 10, 35, 20) and d.before.shape == (10, 5)
    assert M.MaskDiff.between(a, a) is None


def test_undo_memory_of_100_strokes_small():
    m = np.zeros((3000, 4000), bool)
    rng = np.random.default_rng(1)
    diffs = []
    for _ in range(100):
        rec = M.StrokeRecorder(m)
        x, y = rng.uniform(100, 3900), rng.uniform(100, 2900)
        for _ in range(20):
            x, y = x + rng.normal(0, 6), y + rng.normal(0, 6)
            rec.dab(x, y, 20)
        diffs.append(rec.finish())
    total = sum(d.nbytes for d in diffs if d is not None)
    assert total < 5e6, total  # vs 1.2 GB for 100 full copies


def test_rle_and_png_roundtrip():
    rng = np.random.default_rng(2)
    m = rng.random((37, 53)) > 0.7
    assert np.array_equal(M.rle_decode(M.rle_encode(m), m.shape), m)
    full = np.ones((3, 4), bool)
    assert M.rle_encode(full) == [0, 12]
    assert np.array_equal(M.coco_rle_decode(M.coco_rle(m)), m)
    assert np.array_equal(M.decode_png(M.encode_png(m)), m)
    with pytest.raises(ValueError):
        M.rle_decode([1, 2], (2, 2))


def test_measurements_by_hand():
    m = np.zeros((50, 50), bool)
    m[10:20, 5:25] = True  # 10 rows x 20 cols
    out = M.measure(m, 0.5, 0.2)
    assert out["area_px"] == 200
    assert out["area_mm2"] == pytest.approx(200 * 0.1)
    # Pixel squares: 20 * 0.2 = 4 mm wide, 10 * 0.5 = 5 mm high -> diagonal sqrt(41).
    assert out["longest_mm"] == pytest.approx(np.sqrt(41))
    assert out["bbox"] == (5, 10, 25, 20)
    assert M.measure(m, None, None)["longest_mm"] is None
    a = np.zeros((10, 10), bool)
    b = a.copy()
    a[0:4, 0:4] = True
    b[2:6, 0:4] = True  # overlap 8 px, union 24
    assert M.iou_dice(a, b) == pytest.approx((8 / 24, 16 / 32))

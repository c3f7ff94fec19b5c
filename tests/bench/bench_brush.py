"""Brush benchmark: radius-20 dabs on a 4000 x 3000 mask.

Prints: dab -> dirty-rect RGBA overlay update p50/p95 ms (numpy), the same plus the
Qt partial overlay update when PySide6/pyqtgraph are importable, and the memory of
100 strokes' undo diffs.  Run: ``python tests/bench/bench_brush.py`` (not a pass/fail test).
"""

from __future__ import annotations

import os
import time

import numpy as np

from mskstudio.io.masks import StrokeRecorder

H, W, RADIUS = 3000, 4000, 20
COLOR = np.array([230, 25, 75, 110], np.uint8)


def overlay_update(rgba: np.ndarray, mask: np.ndarray, rect) -> None:
    x0, y0, x1, y1 = rect
    sub = mask[y0:y1, x0:x1]
    rgba[y0:y1, x0:x1] = 0
    rgba[y0:y1, x0:x1][sub] = COLOR


def bench_numpy(n_dabs: int = 2000) -> list[float]:
    mask = np.zeros((H, W), bool)
    rgba = np.zeros((H, W, 4), np.uint8)
    rng = np.random.default_rng(0)
    rec = StrokeRecorder(mask)
    x, y = W / 2, H / 2
    times = []
    for _ in range(n_dabs):
        x = float(np.clip(x + rng.normal(0, 8), 0, W - 1))
        y = float(np.clip(y + rng.normal(0, 8), 0, H - 1))
        t = time.perf_counter()
        rect = rec.dab(x, y, RADIUS)
        if rect:
            overlay_update(rgba, mask, rect)
        times.append((time.perf_counter() - t) * 1000)
    return times


def bench_undo_memory(strokes: int = 100, dabs: int = 30) -> tuple[float, float]:
    mask = np.zeros((H, W), bool)
    rng = np.random.default_rng(1)
    total, t_all = 0, 0.0
    for _ in range(strokes):
        rec = StrokeRecorder(mask)
        x, y = rng.uniform(50, W - 50), rng.uniform(50, H - 50)
        for _ in range(dabs):
            x, y = x + rng.normal(0, 6), y + rng.normal(0, 6)
            rec.dab(x, y, RADIUS)
        t = time.perf_counter()
        d = rec.finish()
        t_all += time.perf_counter() - t
        total += d.nbytes if d else 0
    return total / 1e6, t_all / strokes * 1000


def bench_qt(n_dabs: int = 300) -> list[float] | None:
    try:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        import pyqtgraph as pg
        from PySide6.QtWidgets import QApplication

        from mskstudio.gui.views.annotate_tools import OverlayPainter
    except Exception as exc:  # noqa: BLE001
        print(f"Qt part skipped: {exc}")
        return None
    app = QApplication.instance() or QApplication([])
    view = pg.GraphicsView()
    vb = pg.ViewBox(invertY=True, lockAspect=True)
    view.setCentralItem(vb)
    canvas = pg.ItemGroup()
    vb.addItem(canvas)
    view.resize(1200, 900)
    view.show()
    mask = np.zeros((H, W), bool)
    painter = OverlayPainter(canvas, mask.shape)
    vb.setRange(xRange=(W / 2 - 300, W / 2 + 300), yRange=(H / 2 - 225, H / 2 + 225), padding=0)
    app.processEvents()
    painter.set_color((230, 25, 75))
    painter.full_update(mask)
    rng = np.random.default_rng(0)
    rec = StrokeRecorder(mask)
    x, y = W / 2, H / 2
    times = []
    for _ in range(n_dabs):
        x = float(np.clip(x + rng.normal(0, 8), 0, W - 1))
        y = float(np.clip(y + rng.normal(0, 8), 0, H - 1))
        t = time.perf_counter()
        rect = rec.dab(x, y, RADIUS)
        if rect:
            painter.update_rect(mask, rect)
        view.viewport().repaint()  # force the paint now (offscreen: software raster)
        times.append((time.perf_counter() - t) * 1000)
    t = time.perf_counter()
    painter.full_update(mask)
    view.viewport().repaint()
    full_ms = (time.perf_counter() - t) * 1000
    print(f"  reference: full overlay refresh (whole mask -> RGBA + repaint) {full_ms:.1f} ms")
    return times


def main() -> None:
    t = bench_numpy()
    print(
        f"dab r={RADIUS} on {W}x{H} + dirty-rect RGBA update (numpy): "
        f"p50 {np.percentile(t, 50):.3f} ms, p95 {np.percentile(t, 95):.3f} ms, max {max(t):.2f} ms"
    )
    from mskstudio.io.masks import encode_png, measure

    full = np.zeros((H, W), bool)
    full[1000:1400, 1500:2100] = True
    t = time.perf_counter()
    encode_png(full)
    measure(full, 0.1, 0.1)
    print(
        f"save cost per stroke end (PNG encode + measurements, {W}x{H}): "
        f"{(time.perf_counter() - t) * 1000:.0f} ms"
    )
    mb, finish_ms = bench_undo_memory()
    print(
        f"undo diffs of 100 strokes x 30 dabs: {mb:.2f} MB (target < 50 MB; one full mask copy "
        f"is {H * W / 1e6:.0f} MB), finish() {finish_ms:.2f} ms/stroke"
    )
    q = bench_qt()
    if q:
        print(
            "dab + Qt partial overlay update + viewport repaint (offscreen, 600x450 image px on screen): "
            f"p50 {np.percentile(q, 50):.2f} ms, "
            f"p95 {np.percentile(q, 95):.2f} ms"
        )


if __name__ == "__main__":
    main()

"""Brush benchmark: radius-20 dabs on a 4000 x 3000 mask.

Prints: dab -> dirty-rect RGBA overlay update p50/p95 ms (numpy), the same plus the
Qt partial overlay update when PySide6/pyqtgraph are importable, and the memory of
100 strokes' undo diffs.  Run: ``python tests/bench/bench_brush.py`` (not a pass/fail test).
"""

from __future__ import annotations

import os
import time

import numpy as np

from mskstudio.imaging.masks import StrokeRecorder

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

        from mskstudio.gui.annotate.tools import OverlayPainter
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


def bench_stroke_end(
    background: bool, strokes: int = 15, dabs: int = 30, *, wait_for_writes: bool = True
) -> tuple[list[float], list[float], list[float]] | None:
    """GUI-thread ms of each stroke end (``release``: diff, undo push, save hand-off) on the
    real controller, saving inline (before) or through the background writer (after).
    Also returns the ms until the store holds the stroke (the writer's latency) and the ms
    of every dab; with ``wait_for_writes=False`` the next stroke is drawn while the writer
    still saves the last one (do the writer's GIL-holding stretches delay dabs?)."""
    try:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        import pyqtgraph as pg
        from PySide6.QtWidgets import QApplication

        from mskstudio.gui.annotate.panel import AnnotateController
        from mskstudio.store import Project
    except Exception as exc:  # noqa: BLE001
        print(f"stroke-end part skipped: {exc}")
        return None
    import tempfile

    app = QApplication.instance() or QApplication([])
    with tempfile.TemporaryDirectory() as tmp:
        project = Project.create(f"{tmp}/bench.mskproj")
        sid = project.images.study_id(project.images.patient_id("P-bench"), "2.25.1")
        image_id = project.images.add_image(
            {"study_id": sid, "sop_uid": "2.25.2", "rows": H, "cols": W,
             "spacing_row_mm": 0.1, "spacing_col_mm": 0.1}, None)
        canvas = pg.ItemGroup()
        ctl = AnnotateController(background_save=background)
        ctl.attach_canvas(canvas, project)
        ctl.set_image(image_id)
        ctl.mask[1000:1400, 1500:2100] = True  # an outlined lesion: PNG and measurements have work to do
        ctl.set_tool("brush")
        ctl.set_radius(RADIUS)
        rng = np.random.default_rng(2)
        gui_ms, stored_ms, dab_ms = [], [], []
        for _ in range(strokes):
            x, y = rng.uniform(2300, 3600), rng.uniform(1600, 2600)  # beside the lesion: every stroke paints
            ctl.handle("press", (x, y))
            for _ in range(dabs):
                x, y = x + rng.normal(0, 6), y + rng.normal(0, 6)
                t = time.perf_counter()
                ctl.handle("move", (x, y))
                dab_ms.append((time.perf_counter() - t) * 1000)
                time.sleep(0.004)  # mouse events arrive a few ms apart
            t = time.perf_counter()
            ctl.handle("release", (x, y))
            gui_ms.append((time.perf_counter() - t) * 1000)
            if wait_for_writes:
                ctl.flush()  # not GUI work: the next stroke starts after the write
                stored_ms.append((time.perf_counter() - t) * 1000)
            app.processEvents()
        ctl.flush()
        ctl.saver.shutdown()
        project.close()
    return gui_ms, stored_ms, dab_ms


def main() -> None:
    t = bench_numpy()
    print(
        f"dab r={RADIUS} on {W}x{H} + dirty-rect RGBA update (numpy): "
        f"p50 {np.percentile(t, 50):.3f} ms, p95 {np.percentile(t, 95):.3f} ms, max {max(t):.2f} ms"
    )
    from mskstudio.imaging.masks import encode_png, measure

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
    before, after = bench_stroke_end(False), bench_stroke_end(True)
    if before and after:
        b50, a50 = np.percentile(before[0], 50), np.percentile(after[0], 50)
        print(
            f"stroke end on the GUI thread ({W}x{H}, 15 strokes): inline save p50 {b50:.1f} ms "
            f"(max {max(before[0]):.1f}); background writer p50 {a50:.1f} ms (max {max(after[0]):.1f}), "
            f"{b50 / max(a50, 1e-6):.0f}x less; the store holds the stroke after p50 "
            f"{np.percentile(after[1], 50):.0f} ms"
        )
    busy = bench_stroke_end(True, wait_for_writes=False)
    if after and busy:
        print(
            f"controller dab (no repaint) while idle p95 {np.percentile(after[2], 95):.2f} ms "
            f"(max {max(after[2]):.1f}); while the writer saves the previous stroke "
            f"p95 {np.percentile(busy[2], 95):.2f} ms (max {max(busy[2]):.1f})"
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

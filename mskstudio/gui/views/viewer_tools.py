"""Helpers of the viewer: window presets, the W/L-aware view box, measurement items."""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QGraphicsLineItem

from ...io.dicom import Window

MEASURE_COLOR = QColor("#ffd23f")


def _percentile_window(a: np.ndarray, lo_pct: float, hi_pct: float, name: str) -> Window:
    step = max(1, int(math.sqrt(a.size / 262144)))
    lo, hi = (float(v) for v in np.percentile(a[::step, ::step], [lo_pct, hi_pct]))
    return Window((lo + hi) / 2.0, max(hi - lo, 1.0), name)


def window_presets(rad) -> list[tuple[str, Window]]:
    """The five keyboard presets (keys 1-5), then any further stored DICOM windows.

    1 stored DICOM window (or auto where none), 2 bone, 3 soft tissue, 4 auto 1-99 %,
    5 full range.  Radiograph values are not Hounsfield units, so bone and soft tissue
    are percentile bands of the image itself: bone is the bright end after display
    inversion (the low end of a MONOCHROME1 image), soft tissue the darker band.
    """
    a = rad.modality
    stored = list(rad.windows)
    first = stored[0] if stored else rad.auto_window(1.0, 99.0)
    bone_band, soft_band = ((0.5, 55.0), (35.0, 99.0)) if rad.invert else ((45.0, 99.5), (1.0, 65.0))
    lo, hi = float(np.min(a)), float(np.max(a))
    presets = [
        (f"DICOM {first.explanation}".strip() if stored else "Default (auto)", first),
        ("Bone", _percentile_window(a, *bone_band, "bone")),
        ("Soft tissue", _percentile_window(a, *soft_band, "soft tissue")),
        ("Auto 1-99 %", rad.auto_window(1.0, 99.0)),
        ("Full range", Window((lo + hi) / 2.0, max(hi - lo, 1.0), "full range")),
    ]
    presets += [(f"DICOM {w.explanation or i + 2}", w) for i, w in enumerate(stored[1:])]
    return presets


def to_display_u16(modality: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The modality image as uint16 plus (offset, scale) with modality = offset + scale * u16.

    Exact for integer data spanning up to 65 536 values (every radiograph of <= 16 bits
    stored with unit slope); wider or fractional data is quantised to 65 536 levels, far
    finer than any window shows.  pyqtgraph renders uint16 with levels and a lookup
    table through one combined table lookup, several times faster than float scaling,
    which is what keeps window/level dragging smooth on 4000x3000 images.
    """
    step = max(1, int(np.sqrt(modality.size / 1_000_000)))
    lo, hi = float(modality.min()), float(modality.max())
    sample = modality[::step, ::step]
    integral = bool(np.all(sample == np.round(sample)))
    offset = np.floor(lo)
    scale = 1.0 if (integral and hi - offset <= 65535) else max(hi - offset, 1e-6) / 65535.0
    u = np.subtract(modality, np.float32(offset), dtype=np.float32)
    if scale != 1.0:
        u *= np.float32(1.0 / scale)
        u += np.float32(0.5)
    np.clip(u, 0, 65535, out=u)
    return u.astype(np.uint16), float(offset), float(scale)


def _halve(a: np.ndarray) -> np.ndarray:
    """2x2 block mean (edge-padded to even size), uint16 in and out."""
    h, w = a.shape
    if h % 2 or w % 2:
        a = np.pad(a, ((0, h % 2), (0, w % 2)), mode="edge")
    m = a.reshape(a.shape[0] // 2, 2, a.shape[1] // 2, 2).astype(np.uint32).sum(axis=(1, 3))
    return ((m + 2) >> 2).astype(np.uint16)


class WLViewBox(pg.ViewBox):
    """ViewBox where right-drag changes window/level and left-drag/click feed the active tool.

    ``viewer`` receives ``wl_drag(dx, dy, phase)`` and ``tool_drag(p_scene, phase)`` /
    ``tool_click(p_scene)``; left-drag pans when the tool is 'pan', the wheel zooms to the
    cursor (pyqtgraph's default).
    """

    def __init__(self, viewer):
        super().__init__(enableMenu=False, invertY=True, lockAspect=True)
        self.viewer = viewer

    def mouseDragEvent(self, ev, axis=None):
        if ev.button() == Qt.MouseButton.RightButton:
            ev.accept()
            d = ev.screenPos() - ev.buttonDownScreenPos()
            phase = "start" if ev.isStart() else "finish" if ev.isFinish() else "move"
            self.viewer.wl_drag(d.x(), d.y(), phase)
            return
        if ev.button() == Qt.MouseButton.LeftButton and self.viewer.tool in ("ruler", "angle"):
            ev.accept()
            phase = "start" if ev.isStart() else "finish" if ev.isFinish() else "move"
            start = ev.buttonDownScenePos() if ev.isStart() else ev.scenePos()
            self.viewer.tool_drag(start, ev.scenePos(), phase)
            return
        super().mouseDragEvent(ev, axis)

    def mouseClickEvent(self, ev):
        if ev.button() == Qt.MouseButton.LeftButton and self.viewer.tool == "angle":
            ev.accept()
            self.viewer.tool_click(ev.scenePos())
            return
        if ev.button() == Qt.MouseButton.RightButton:
            ev.accept()  # no context menu: right button is window/level
            return
        super().mouseClickEvent(ev)


def _pen(width: float = 2.0) -> QPen:
    pen = QPen(MEASURE_COLOR, width)
    pen.setCosmetic(True)
    return pen


class Measurement:
    """A ruler (2 points) or an angle (3 points, vertex in the middle) in image pixels.

    Coordinates are (x=column, y=row) of the full-resolution image; lengths use the
    pixel spacing (row, col) in mm, or pixels where there is none.
    """

    def __init__(self, parent, points: list[tuple[float, float]], spacing, estimated: bool):
        self.parent, self.points = parent, list(points)
        self.spacing, self.estimated = spacing, estimated
        self.lines = [QGraphicsLineItem(parent) for _ in range(max(1, len(points) - 1))]
        for line in self.lines:
            line.setPen(_pen())
        self.label = pg.TextItem(color=MEASURE_COLOR, anchor=(0, 1), fill=pg.mkBrush(0, 0, 0, 160))
        self.label.setParentItem(parent)
        self.update(self.points)

    @property
    def kind(self) -> str:
        return "angle" if len(self.points) == 3 else "ruler"

    def length(self, a, b) -> tuple[float, str]:
        dx, dy = b[0] - a[0], b[1] - a[1]
        if self.spacing is None:
            return math.hypot(dx, dy), "px"
        return math.hypot(dx * self.spacing[1], dy * self.spacing[0]), "mm"

    @property
    def mm(self) -> float | None:
        if self.kind != "ruler" or self.spacing is None:
            return None
        return self.length(*self.points)[0]

    @property
    def degrees(self) -> float | None:
        if self.kind != "angle":
            return None
        a, v, c = self.points
        sr, sc = self.spacing or (1.0, 1.0)
        u = ((a[0] - v[0]) * sc, (a[1] - v[1]) * sr)
        w = ((c[0] - v[0]) * sc, (c[1] - v[1]) * sr)
        nu, nw = math.hypot(*u), math.hypot(*w)
        if nu == 0 or nw == 0:
            return 0.0
        cos = max(-1.0, min(1.0, (u[0] * w[0] + u[1] * w[1]) / (nu * nw)))
        return math.degrees(math.acos(cos))

    def text(self) -> str:
        if self.kind == "angle":
            return f"{self.degrees:.1f}°"
        value, unit = self.length(*self.points)
        return f"{'≈' if self.estimated and unit == 'mm' else ''}{value:.1f} {unit}"

    def update(self, points) -> None:
        self.points = list(points)
        for line, (a, b) in zip(self.lines, zip(self.points, self.points[1:], strict=False), strict=False):
            line.setLine(a[0], a[1], b[0], b[1])
        anchor = self.points[1] if self.kind == "angle" else self.points[-1]
        self.label.setPos(QPointF(*anchor))
        self.label.setText(self.text())

    def remove(self) -> None:
        scene = self.parent.scene()
        for item in (*self.lines, self.label):
            item.setParentItem(None)
            if scene is not None and item.scene() is scene:
                scene.removeItem(item)

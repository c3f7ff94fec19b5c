"""Helpers of the viewer: window presets, the W/L-aware view box, measurement items."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QBrush, QColor, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsLineItem, QGraphicsRectItem, QMenu

from mskstudio.io.dicom import Window
from mskstudio.io.pixels import window_between, window_sample
from mskstudio.store.repo_measurements import APPROXIMATE_SOURCES, angle_degrees, ruler_length

MEASURE_COLOR = QColor("#ffd23f")
SELECTED_COLOR = QColor("#4fc3f7")


# Percentile bands of the presets, in modality units (MONOCHROME2 first, then MONOCHROME1):
# radiograph values are not Hounsfield units, so bone and soft tissue are bands of the image
# itself; bone is the bright end after display inversion (the low end of a MONOCHROME1 image).
_BONE_BAND = {False: (45.0, 99.5), True: (0.5, 55.0)}
_SOFT_BAND = {False: (1.0, 65.0), True: (35.0, 99.0)}
AUTO_BAND = (1.0, 99.0)


def preset_percentiles(invert: bool) -> tuple[float, ...]:
    """The percentiles ``presets_from`` needs, measured on ``pixels.window_sample`` of the image."""
    return (*_BONE_BAND[invert], *_SOFT_BAND[invert], *AUTO_BAND)


def presets_from(windows: list[Window], invert: bool, values: list[float], lo: float, hi: float
                 ) -> list[tuple[str, Window]]:
    """The five keyboard presets (keys 1-5), then any further stored DICOM windows.

    1 stored DICOM window (or auto where none), 2 bone, 3 soft tissue, 4 auto 1-99 %,
    5 full range.  ``values`` are the modality values at ``preset_percentiles(invert)``
    and (lo, hi) the image's modality range: the float decode measures them on the
    modality image, the stored-integer path on its display integers.
    """
    bone_lo, bone_hi, soft_lo, soft_hi, auto_lo, auto_hi = (float(v) for v in values)
    auto = window_between(auto_lo, auto_hi, *AUTO_BAND)
    first = windows[0] if windows else auto
    presets = [
        (f"DICOM {first.explanation}".strip() if windows else "Default (auto)", first),
        ("Bone", _band_window(bone_lo, bone_hi, "bone")),
        ("Soft tissue", _band_window(soft_lo, soft_hi, "soft tissue")),
        ("Auto 1-99 %", auto),
        ("Full range", _band_window(lo, hi, "full range")),
    ]
    presets += [(f"DICOM {w.explanation or i + 2}", w) for i, w in enumerate(windows[1:])]
    return presets


def _band_window(lo: float, hi: float, name: str) -> Window:
    return Window((lo + hi) / 2.0, max(hi - lo, 1.0), name)


def window_presets(rad) -> list[tuple[str, Window]]:
    """``presets_from`` a decoded float Radiograph: one np.percentile over its window sample
    (the sample ``Radiograph.auto_window`` measures, so preset 4 is ``rad.auto_window()``)."""
    a = rad.modality
    values = np.percentile(window_sample(a), preset_percentiles(rad.invert))
    return presets_from(list(rad.windows), rad.invert, list(values), float(np.min(a)), float(np.max(a)))


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
        if ev.button() == Qt.MouseButton.LeftButton:
            self.viewer.select_measurement(None)  # a click beside every measurement drops the selection
        super().mouseClickEvent(ev)


def _pen(color: QColor = MEASURE_COLOR, width: float = 2.0) -> QPen:
    pen = QPen(color, width)
    pen.setCosmetic(True)
    return pen


class _Handle(QGraphicsRectItem):
    """A measurement endpoint: the same size on screen at any zoom, dragged with the left button."""

    HALF = 4.5

    def __init__(self, owner: Measurement, index: int):
        super().__init__(-self.HALF, -self.HALF, 2 * self.HALF, 2 * self.HALF, owner.parent)
        self.owner, self.index = owner, index
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
        self.setCursor(Qt.CursorShape.SizeAllCursor)
        self.setZValue(10)

    def mousePressEvent(self, ev):
        if ev.button() != Qt.MouseButton.LeftButton:
            ev.ignore()  # the right button stays window/level
            return
        ev.accept()
        self.owner.drag_started()

    def mouseMoveEvent(self, ev):
        p = self.parentItem().mapFromScene(ev.scenePos())
        self.owner.move_point(self.index, (p.x(), p.y()))

    def mouseReleaseEvent(self, ev):
        self.owner.drag_finished()

    def contextMenuEvent(self, ev):
        ev.accept()
        self.owner.context_menu(ev.screenPos())


class _Label(pg.TextItem):
    """The value; a click selects the measurement, a right click opens its menu."""

    def __init__(self, owner: Measurement):
        super().__init__(color=MEASURE_COLOR, anchor=(0, 1), fill=pg.mkBrush(0, 0, 0, 160))
        self.owner = owner

    def mouseClickEvent(self, ev):
        if ev.button() == Qt.MouseButton.LeftButton:
            ev.accept()
            self.owner.select()
        elif ev.button() == Qt.MouseButton.RightButton:
            ev.accept()
            self.owner.context_menu(ev.screenPos())


class Measurement:
    """A ruler (2 points) or an angle (3 points, vertex in the middle) in image pixels.

    Coordinates are (x=column, y=row) of the full-resolution image; lengths use the
    pixel spacing (row, col) in mm, or pixels where there is none.  ``source`` is where
    that spacing came from (PixelSpacing, ImagerPixelSpacing, estimated, none); mm from
    the last two are approximate and shown with "≈".  A saved measurement has an id;
    ``host`` (the viewer) hears about selection, endpoint drags and menu requests.
    """

    def __init__(self, parent, points: list[tuple[float, float]], spacing, source: str = "none", *,
                 measurement_id: int | None = None, host=None, author: str | None = None):
        self.parent, self.points = parent, [tuple(p) for p in points]
        self.spacing, self.source = spacing, source
        self.measurement_id, self.host, self.author = measurement_id, host, author
        self.selected = False
        self._drag_from: list[tuple[float, float]] | None = None
        self.lines = [QGraphicsLineItem(parent) for _ in range(max(1, len(points) - 1))]
        self.handles = [_Handle(self, i) for i in range(len(points))]
        self.label = _Label(self)
        self.label.setParentItem(parent)
        self._restyle()
        self.update(self.points)

    @classmethod
    def from_row(cls, parent, row, host=None) -> Measurement:
        spacing = ((row["spacing_row_mm"], row["spacing_col_mm"]) if row["spacing_row_mm"] else None)
        return cls(parent, row["points"], spacing, row["spacing_source"], measurement_id=row["id"],
                   host=host, author=row["author"])

    def apply_row(self, row) -> None:
        """Follow the stored state (after an undo, a redo or an edit elsewhere)."""
        if self._drag_from is not None:
            return  # the user is dragging this one: the drag's end will save it
        self.spacing = (row["spacing_row_mm"], row["spacing_col_mm"]) if row["spacing_row_mm"] else None
        self.source, self.author = row["spacing_source"], row["author"]
        self.update(row["points"])

    @property
    def kind(self) -> str:
        return "angle" if len(self.points) == 3 else "ruler"

    @property
    def estimated(self) -> bool:
        return self.source in APPROXIMATE_SOURCES

    @property
    def mm(self) -> float | None:
        if self.kind != "ruler" or self.spacing is None:
            return None
        return ruler_length(self.points, self.spacing)[1]

    @property
    def degrees(self) -> float | None:
        return angle_degrees(self.points, self.spacing) if self.kind == "angle" else None

    def text(self) -> str:
        if self.kind == "angle":
            return f"{self.degrees:.1f}°"
        px, mm = ruler_length(self.points, self.spacing)
        if mm is None:
            return f"{px:.1f} px"
        return f"{'≈' if self.estimated else ''}{mm:.1f} mm"

    def update(self, points) -> None:
        self.points = [tuple(p) for p in points]
        for line, (a, b) in zip(self.lines, zip(self.points, self.points[1:], strict=False), strict=False):
            line.setLine(a[0], a[1], b[0], b[1])
        for handle, p in zip(self.handles, self.points, strict=False):
            handle.setPos(QPointF(*p))
        anchor = self.points[1] if self.kind == "angle" else self.points[-1]
        self.label.setPos(QPointF(*anchor))
        self.label.setText(self.text())

    # ---- interaction -----------------------------------------------------------------------
    def set_selected(self, selected: bool) -> None:
        self.selected = selected
        self._restyle()

    def _restyle(self) -> None:
        color = SELECTED_COLOR if self.selected else MEASURE_COLOR
        for line in self.lines:
            line.setPen(_pen(color, 2.5 if self.selected else 2.0))
        for handle in self.handles:
            handle.setPen(_pen(color, 1.5))
            handle.setBrush(QBrush(color) if self.selected else QBrush(QColor(0, 0, 0, 120)))
        self.label.setColor(color)

    def select(self) -> None:
        if self.host is not None:
            self.host.select_measurement(self)

    def context_menu(self, screen_pos) -> None:
        if self.host is not None:
            self.host.show_measurement_menu(self, screen_pos)

    def drag_started(self) -> None:
        self._drag_from = list(self.points)
        self.select()

    def move_point(self, index: int, point: tuple[float, float]) -> None:
        if self._drag_from is None:
            return
        points = list(self.points)
        points[index] = point
        self.update(points)

    def drag_finished(self) -> None:
        before, self._drag_from = self._drag_from, None
        if before is not None and before != self.points and self.host is not None:
            self.host.measurement_moved(self, before)

    def remove(self) -> None:
        scene = self.parent.scene()
        for item in (*self.lines, *self.handles, self.label):
            item.setParentItem(None)
            if scene is not None and item.scene() is scene:
                scene.removeItem(item)


def measurement_menu(viewer, m: Measurement) -> QMenu:
    """The context menu of one measurement (built apart from ``exec`` so tests can trigger it)."""
    menu = QMenu(viewer)
    who = f" · {m.author}" if m.author else ""
    title = menu.addAction(f"{m.kind.capitalize()} {m.text()}{who}")
    title.setEnabled(False)
    menu.addSeparator()
    delete = menu.addAction("Delete measurement", lambda: viewer.delete_measurements([m]))
    delete.setShortcut(Qt.Key.Key_Delete)
    menu.addAction("Delete all measurements on this image", viewer.delete_all_measurements)
    return menu

"""What the annotator sees while drawing: the polygon's vertices and edges, the box being
dragged, and the lesion's size (longest diameter and area, in mm when the pixel spacing
is known, else in pixels).

Sizes use the same geometry as the stored measurements (``imaging.masks.measure``: the
longest distance between the region's pixel corners, the pixel count times the pixel
area); a polygon or box still being drawn is measured on its outline (vertices, shoelace
area), which is cheap enough for every mouse move.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsPathItem

from mskstudio.imaging import masks as M

DRAFT_COLOR = QColor("#ffd23f")
VERTEX_PX = 4.0  # half size of a vertex mark on screen


def _scaled(points, spacing) -> tuple[np.ndarray, str]:
    pts = np.asarray(points, float).reshape(-1, 2)
    if spacing:
        sr, sc = spacing
        return pts * [sc, sr], "mm"
    return pts, "px"


def outline_size(points, spacing) -> tuple[float, float, str]:
    """(longest diameter, area, unit) of a polygon outline: the largest vertex-to-vertex
    distance and the shoelace area, in mm / mm² with ``spacing`` (row, col) else pixels."""
    pts, unit = _scaled(points, spacing)
    if len(pts) < 2:
        return 0.0, 0.0, unit
    d = pts[:, None, :] - pts[None, :, :]
    longest = float(np.sqrt((d ** 2).sum(-1)).max())
    x, y = pts[:, 0], pts[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) if len(pts) >= 3 else 0.0
    return longest, area, unit


def rect_size_text(rect, spacing) -> str:
    x0, y0, x1, y1 = rect
    corners = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    longest, area, unit = outline_size(corners, spacing)
    pts, _ = _scaled([(x0, y0), (x1, y1)], spacing)
    w, h = abs(pts[1] - pts[0])
    return f"Box {w:.1f} × {h:.1f} {unit} · diagonal {longest:.1f} {unit} · area {area:.0f} {unit}²"


def outline_size_text(points, spacing) -> str:
    longest, area, unit = outline_size(points, spacing)
    return f"Outline: longest {longest:.1f} {unit} · area {area:.0f} {unit}² ({len(points)} points)"


def mask_size_text(mask: np.ndarray, spacing) -> str:
    """Longest diameter and area of the mask being edited (measured on its bounding box only)."""
    rect = M.bbox(mask)
    if rect is None:
        return "Lesion: empty mask"
    x0, y0, x1, y1 = rect
    crop = mask[y0:y1, x0:x1]
    if spacing:
        m = M.measure(crop, *spacing)
        return f"Lesion: longest {m['longest_mm']:.1f} mm · area {m['area_mm2']:.0f} mm²"
    return f"Lesion: longest {M.max_feret(crop):.1f} px · area {int(crop.sum())} px² (no pixel spacing)"


class DraftItem(QGraphicsPathItem):
    """The outline being drawn, in image pixels under the viewer's canvas (not saved)."""

    def __init__(self, parent: QGraphicsItem | None):
        super().__init__(parent)
        pen = QPen(DRAFT_COLOR, 1.5, Qt.PenStyle.DashLine)
        pen.setCosmetic(True)
        self.setPen(pen)
        self.setZValue(900)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.vertices: list[QGraphicsPathItem] = []

    def show_polygon(self, points, cursor=None, vertex_size: float = 1.0) -> None:
        """Edges between ``points``, a rubber band to ``cursor``, a square at every vertex
        (the first one larger: clicking near it closes the polygon)."""
        path = QPainterPath()
        if points:
            path.moveTo(QPointF(*points[0]))
            for p in points[1:]:
                path.lineTo(QPointF(*p))
            if cursor is not None:
                path.lineTo(QPointF(*cursor))
        self.setPath(path)
        self._marks(points, vertex_size)

    def show_rect(self, rect) -> None:
        x0, y0, x1, y1 = rect
        path = QPainterPath()
        path.addRect(QRectF(min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0)))
        self.setPath(path)
        self._marks([], 1.0)

    def clear(self) -> None:
        self.setPath(QPainterPath())
        self._marks([], 1.0)

    def _marks(self, points, size: float) -> None:
        scene = self.scene()
        for v in self.vertices:
            v.setParentItem(None)
            if scene is not None and v.scene() is scene:
                scene.removeItem(v)
        self.vertices = []
        for i, (x, y) in enumerate(points):
            half = size * (2.0 if i == 0 else 1.0)
            path = QPainterPath()
            path.addRect(QRectF(x - half, y - half, 2 * half, 2 * half))
            mark = QGraphicsPathItem(path, self)
            mark.setPen(self.pen())
            mark.setBrush(QBrush(DRAFT_COLOR if i == 0 else QColor(0, 0, 0, 140)))
            self.vertices.append(mark)

    def remove(self) -> None:
        self.clear()
        scene = self.scene()
        self.setParentItem(None)
        if scene is not None:
            scene.removeItem(self)

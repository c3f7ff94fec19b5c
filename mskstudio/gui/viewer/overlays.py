"""Overlay layers of the viewer (masks, heat maps, boxes) that later tools fill.

A mixin of ``Viewer``: layers are children of the viewer's ``canvas`` (full-resolution
image pixels), so they follow rotation, flips and zoom; any resolution is stretched
over the image.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QColor, QPen, QTransform
from PySide6.QtWidgets import QGraphicsRectItem

HEAT = pg.colormap.get("inferno").getLookupTable(0.0, 1.0, 256, alpha=True)


class OverlayLayers:
    def set_overlay(self, name: str, array: np.ndarray | None, opacity: float = 0.5) -> None:
        """Add or replace layer ``name``: HxW scalar (0..1 heat map; bool/int = mask) or HxWx4 RGBA.

        Any resolution: the layer is stretched over the image.  ``None`` removes it.
        """
        if array is None:
            item = self.overlays.pop(name, None)
            if item is not None:
                item.setParentItem(None)
                self.view.scene().removeItem(item)
            return
        a = np.asarray(array)
        if a.ndim == 2 and (a.dtype == bool or np.issubdtype(a.dtype, np.integer)):
            rgba = np.zeros(a.shape + (4,), np.uint8)
            rgba[a > 0] = (0, 220, 120, 255)
            a, lut, levels = rgba, None, None
        elif a.ndim == 2:
            a, lut, levels = a.astype(np.float32), HEAT, (0.0, 1.0)
        else:
            lut, levels = None, None
        item = self.overlays.get(name)
        if item is None:
            item = pg.ImageItem(axisOrder="row-major")
            item.setParentItem(self.canvas)
            item.setZValue(10 + len(self.overlays))
            self.overlays[name] = item
        item.setImage(a, lut=lut, levels=levels, autoLevels=False)
        if self.row is not None:
            sx, sy = self.row.cols / a.shape[1], self.row.rows / a.shape[0]
            item.setTransform(QTransform.fromScale(sx, sy))
        item.setOpacity(float(opacity))
        item.setVisible(self.overlays_shown and item.isVisible() or self.overlays_shown)

    def set_overlay_opacity(self, name: str, opacity: float) -> None:
        self.overlays[name].setOpacity(float(opacity))

    def overlay_visible(self, name: str, visible: bool | None = None) -> bool:
        """Show/hide one layer (``visible`` given) and return whether it is shown."""
        item = self.overlays.get(name)
        if name == "boxes":
            if visible is not None:
                for b in self.box_items:
                    b.setVisible(bool(visible))
            return bool(self.box_items and self.box_items[0].isVisible())
        if item is None:
            return False
        if visible is not None:
            item.setVisible(bool(visible))
        return item.isVisible()

    def toggle_overlays(self) -> None:
        self.overlays_shown = not self.overlays_shown
        for item in list(self.overlays.values()) + self.box_items:
            item.setVisible(self.overlays_shown)

    def set_boxes(self, boxes) -> None:
        """Boxes in image pixels: dicts/rows with x0, y0, x1, y1 (and optional label, color)."""
        for item in self.box_items:
            item.setParentItem(None)
            if item.scene() is not None:
                item.scene().removeItem(item)
        self.box_items = []
        for b in boxes or []:
            get = (lambda k, d=None, b=b: b.get(k, d)) if hasattr(b, "keys") else None
            x0, y0, x1, y1 = (get(k) for k in ("x0", "y0", "x1", "y1")) if get else b[:4]
            color = QColor((get("color") if get else None) or "#42d4f4")
            rect = QGraphicsRectItem(min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0), self.canvas)
            pen = QPen(color, 2)
            pen.setCosmetic(True)
            rect.setPen(pen)
            rect.setZValue(50)
            rect.setVisible(self.overlays_shown)
            self.box_items.append(rect)
            label = get("label") if get else (b[4] if len(b) > 4 else None)
            if label:
                text = pg.TextItem(str(label), color=color, anchor=(0, 1), fill=pg.mkBrush(0, 0, 0, 170))
                text.setParentItem(rect)
                text.setPos(min(x0, x1), min(y0, y1))
                self.box_items.append(text)

    def clear_overlays(self) -> None:
        for name in list(self.overlays):
            self.set_overlay(name, None)
        self.set_boxes([])

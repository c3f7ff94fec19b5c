"""Pieces of the Annotate mode: the mask overlay item, the input catcher, undo commands.

* ``MaskOverlayItem`` is an image item in full-resolution image pixels that owns an
  RGBA (premultiplied) numpy buffer wrapped by a QImage without copying; a dab writes
  only its dirty rectangle into the buffer and asks Qt to repaint only that rectangle.
  (pyqtgraph's ImageItem re-renders the whole image on every ``setImage``; for a
  4000 x 3000 mask that is tens of milliseconds a dab.)
* ``OverlayPainter`` maps a bool mask to that buffer (full or dirty-rect updates).
* ``InputCatcher`` is an invisible item over the image that takes left-button events
  while a drawing tool is active, so pan/zoom/window-level stay with the view box.
* ``MaskEditCommand`` / ``AddBoxCommand`` are QUndoCommands: redo/undo apply a
  ``MaskDiff`` and save the mask through the store (each save is one audited transaction).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QUndoCommand
from PySide6.QtWidgets import QGraphicsItem, QGraphicsObject, QStyleOptionGraphicsItem

from ...io.masks import MaskDiff, Rect


class MaskOverlayItem(QGraphicsObject):
    """Shows an RGBA uint8 (premultiplied) buffer; ``update_rect`` repaints only a part."""

    def __init__(self, shape: tuple[int, int], parent: QGraphicsItem | None = None):
        super().__init__(parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        self.resize(shape)

    def resize(self, shape: tuple[int, int]) -> None:
        self.prepareGeometryChange()
        h, w = shape
        self.buffer = np.zeros((h, w, 4), np.uint8)
        self.qimage = QImage(self.buffer.data, w, h, w * 4, QImage.Format.Format_RGBA8888_Premultiplied)
        self.update()

    def boundingRect(self) -> QRectF:
        return QRectF(0, 0, self.buffer.shape[1], self.buffer.shape[0])

    def paint(self, painter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        r = option.exposedRect.intersected(self.boundingRect()).toAlignedRect()
        if r.isEmpty():
            return
        painter.drawImage(QRectF(r), self.qimage, QRectF(r))

    def update_rect(self, rect: Rect) -> None:
        x0, y0, x1, y1 = rect
        self.update(QRectF(x0, y0, x1 - x0, y1 - y0))


class OverlayPainter:
    """Keeps a ``MaskOverlayItem`` in sync with a bool mask."""

    def __init__(self, parent: QGraphicsItem | None, shape: tuple[int, int], *, opacity: float = 0.45):
        self.item = MaskOverlayItem(shape, parent)
        self.item.setZValue(20)
        self.opacity = opacity
        self.set_color((230, 25, 75))

    def set_color(self, rgb, opacity: float | None = None) -> None:
        if isinstance(rgb, str):
            c = QColor(rgb)
            rgb = (c.red(), c.green(), c.blue())
        if opacity is not None:
            self.opacity = opacity
        a = int(round(255 * self.opacity))
        self.color = np.array([v * a // 255 for v in rgb] + [a], np.uint8)  # premultiplied

    def full_update(self, mask: np.ndarray) -> None:
        if self.item.buffer.shape[:2] != mask.shape:
            self.item.resize(mask.shape)
        buf = self.item.buffer
        buf[:] = 0
        buf[mask] = self.color
        self.item.update()

    def update_rect(self, mask: np.ndarray, rect: Rect | None) -> None:
        if rect is None:
            return
        x0, y0, x1, y1 = rect
        sub = self.item.buffer[y0:y1, x0:x1]
        sub[:] = 0
        sub[mask[y0:y1, x0:x1]] = self.color
        self.item.update_rect(rect)

    def remove(self) -> None:
        scene = self.item.scene()
        self.item.setParentItem(None)
        if scene is not None:
            scene.removeItem(self.item)


class InputCatcher(QGraphicsObject):
    """Invisible rectangle over the image that forwards left-button presses/moves/releases.

    ``handler(kind, (x, y), modifiers)`` gets kind in press | move | release | double, with
    positions in image pixels.  Disabled (no buttons accepted) while no drawing tool is on.
    """

    def __init__(self, shape: tuple[int, int], handler: Callable, parent: QGraphicsItem | None = None):
        super().__init__(parent)
        self.handler = handler
        self.shape_ = shape
        self.setZValue(1000)
        self.set_active(False)

    def set_shape(self, shape: tuple[int, int]) -> None:
        self.prepareGeometryChange()
        self.shape_ = shape

    def set_active(self, active: bool) -> None:
        self.setAcceptedMouseButtons(Qt.MouseButton.LeftButton if active else Qt.MouseButton.NoButton)
        self.setAcceptHoverEvents(False)

    def boundingRect(self) -> QRectF:
        # A margin around the image so strokes may start just outside it.
        h, w = self.shape_
        return QRectF(-0.5 * w, -0.5 * h, 2 * w, 2 * h)

    def paint(self, painter, option, widget=None) -> None:
        pass

    def _emit(self, kind: str, ev) -> None:
        p: QPointF = ev.pos()
        self.handler(kind, (p.x(), p.y()), ev.modifiers())

    def mousePressEvent(self, ev):
        ev.accept()
        self._emit("press", ev)

    def mouseMoveEvent(self, ev):
        ev.accept()
        self._emit("move", ev)

    def mouseReleaseEvent(self, ev):
        ev.accept()
        self._emit("release", ev)

    def mouseDoubleClickEvent(self, ev):
        ev.accept()
        self._emit("double", ev)


class MaskEditCommand(QUndoCommand):
    """One stroke (or fill/polygon/lasso): undo reverts its diff, redo re-applies it.

    The edit is already on the mask when the command is pushed, so the first redo only
    saves.  ``save(mask)`` writes the store; ``repaint(rect)`` refreshes the overlay.
    """

    def __init__(
        self,
        text: str,
        mask: np.ndarray,
        diff: MaskDiff,
        save: Callable[[np.ndarray], None],
        repaint: Callable[[Rect], None],
    ):
        super().__init__(text)
        self.mask, self.diff, self.save, self.repaint = mask, diff, save, repaint
        self._first = True

    def redo(self) -> None:
        if not self._first:
            self.repaint(self.diff.apply(self.mask))
        self._first = False
        self.save(self.mask)

    def undo(self) -> None:
        self.repaint(self.diff.revert(self.mask))
        self.save(self.mask)


class AddBoxCommand(QUndoCommand):
    """Add a box through the store; undo deletes it (both audited by the store)."""

    def __init__(
        self, project, image_id: int, class_id: int, rect, on_change: Callable[[], None] | None = None
    ):
        super().__init__("Add box")
        self.project, self.image_id, self.class_id, self.rect = project, image_id, class_id, rect
        self.on_change = on_change
        self.box_id: int | None = None

    def redo(self) -> None:
        self.box_id = self.project.annotations.add_box(self.image_id, self.class_id, self.rect)
        if self.on_change:
            self.on_change()

    def undo(self) -> None:
        if self.box_id is not None:
            self.project.annotations.delete_box(self.box_id)
            self.box_id = None
        if self.on_change:
            self.on_change()

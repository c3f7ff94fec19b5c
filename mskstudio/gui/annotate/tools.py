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
* ``MaskSaver`` does those saves on one background writer thread: PNG encoding and
  the measurements of a 4000 x 3000 mask take tens of milliseconds, too long for the
  GUI thread at every stroke end.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QUndoCommand
from PySide6.QtWidgets import QGraphicsItem, QGraphicsObject, QStyleOptionGraphicsItem

from mskstudio.gui.viewer.boxes import box_events
from mskstudio.imaging.masks import MaskDiff, Rect


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

    def set_active(self, active: bool, *, hover: bool = False) -> None:
        """Take the left button while a tool is on; ``hover`` also forwards plain mouse moves
        (kind "hover": the polygon's rubber band follows the cursor between clicks)."""
        self.setAcceptedMouseButtons(Qt.MouseButton.LeftButton if active else Qt.MouseButton.NoButton)
        self.setAcceptHoverEvents(active and hover)

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

    def hoverMoveEvent(self, ev):
        self._emit("hover", ev)


class MaskEditCommand(QUndoCommand):
    """One stroke (or fill/polygon/lasso): undo reverts its diff, redo re-applies it.

    The edit is already on the mask when the command is pushed, so the first redo only
    saves.  ``mask()`` gives the mask being edited *now* (the image may have been closed
    and reopened since the stroke: a fresh array with the same pixels), ``save(mask)``
    writes the store and ``repaint(rect)`` refreshes the overlay.
    """

    def __init__(
        self,
        text: str,
        mask: Callable[[], np.ndarray],
        diff: MaskDiff,
        save: Callable[[np.ndarray], None],
        repaint: Callable[[Rect], None],
    ):
        super().__init__(text)
        self.mask, self.diff, self.save, self.repaint = mask, diff, save, repaint
        self._first = True

    def redo(self) -> None:
        mask = self.mask()
        if not self._first:
            self.repaint(self.diff.apply(mask))
        self._first = False
        self.save(mask)

    def undo(self) -> None:
        mask = self.mask()
        self.repaint(self.diff.revert(mask))
        self.save(mask)


class AddBoxCommand(QUndoCommand):
    """Add a box through the store; undo deletes it (both audited by the store)."""

    def __init__(
        self, project, image_id: int, class_id: int, rect, on_change: Callable[[], None] | None = None,
        text: str = "Add box",
    ):
        super().__init__(text)
        self.project, self.image_id, self.class_id, self.rect = project, image_id, class_id, rect
        self.on_change = on_change
        self.box_id: int | None = None

    def redo(self) -> None:
        self.box_id = self.project.annotations.add_box(self.image_id, self.class_id, self.rect)
        self._changed()

    def undo(self) -> None:
        if self.box_id is not None:
            self.project.annotations.delete_box(box_events.current_id(self.box_id))
            self.box_id = None
        self._changed()

    def _changed(self) -> None:
        box_events.changed.emit(self.project, self.image_id)  # every viewer redraws its boxes
        if self.on_change:
            self.on_change()


@dataclass
class SaveRequest:
    """One mask to write: the store row's key, a snapshot of the pixels, the audit action."""

    image_id: int
    class_id: int
    source: str
    mask: np.ndarray
    action: str = "mask.save"
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[int, int, str]:
        return self.image_id, self.class_id, self.source


class MaskSaver(QObject):
    """Saves masks on one writer thread, in order, with nothing lost.

    ``submit`` takes a snapshot and returns at once.  Requests for the same mask that
    pile up while the writer is busy collapse into the newest snapshot (every save
    writes the whole mask, so the newest contains every earlier stroke; its audit entry
    counts the strokes in ``details["edits"]``).  ``flush`` blocks until everything
    submitted is in the store — before reading masks back, switching image or project,
    and when the window closes.

    The writer uses its own connection to the project database (``Database`` opens one
    per thread): closing the GUI's project handle never pulls it from under a write.
    ``saved(image id, mask id)`` and ``failed(image id, message, details)`` arrive on
    the GUI thread.  ``background=False`` saves inline (scripts, and the benchmark's
    "before" figure).
    """

    saved = Signal(int, int)
    failed = Signal(int, str, str)

    def __init__(self, parent: QObject | None = None, *, background: bool = True):
        super().__init__(parent)
        self.background = background
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mask-writer") if background else None
        self._lock = threading.RLock()  # a done callback may run at once, inside _track
        self._latest: dict[tuple[int, int, str], tuple[SaveRequest, int]] = {}
        self._futures: set[Future] = set()
        self._writer = None  # the writer thread's Project on the same folder
        self._source_project = None

    def set_project(self, project) -> None:
        """Write into ``project`` from now on (pending saves go to the previous one first)."""
        self.flush()
        old, self._writer, self._source_project = self._writer, None, project
        if old is not None:
            self._run_in_writer(old.close)
        if project is not None and not project.readonly:
            from mskstudio.store import Project
            from mskstudio.store.db import Database

            self._writer = Project(project.root, Database(project.db.path), readonly=False)
            self._writer.author = project.author
            # Start the thread and open its connection now, not inside the first stroke's end.
            writer = self._writer
            self._run_in_writer(lambda: writer.annotations and writer.db.conn)

    def submit(self, request: SaveRequest) -> None:
        if self._writer is None:
            raise RuntimeError("no writable project to save masks into")
        writer = self._writer
        writer.author = self._source_project.author  # the annotator may change in preferences
        if not self.background:
            self._write(writer, request, 1)
            return
        with self._lock:
            pending = self._latest.get(request.key)
            self._latest[request.key] = (request, (pending[1] + 1) if pending else 1)
            if pending is None:  # else the writer has not taken the older snapshot yet
                self._track(self._executor.submit(self._write_latest, writer, request.key))

    def pending(self) -> int:
        with self._lock:
            return sum(not f.done() for f in self._futures)

    def flush(self, timeout_s: float | None = 60.0) -> bool:
        """Wait until every submitted save is written; False if the writer did not finish in time."""
        with self._lock:
            futures = list(self._futures)
        if not futures:
            return True
        done, not_done = wait(futures, timeout=timeout_s)
        return not not_done

    def shutdown(self) -> None:
        self.set_project(None)
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    # ---- writer thread ------------------------------------------------------------------
    def _track(self, future: Future) -> None:
        self._futures.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future) -> None:
        with self._lock:
            self._futures.discard(future)

    def _run_in_writer(self, fn: Callable[[], None]) -> None:
        if self._executor is None:
            fn()
        else:
            with self._lock:
                self._track(self._executor.submit(fn))

    def _write_latest(self, writer, key: tuple[int, int, str]) -> None:
        with self._lock:
            request, edits = self._latest.pop(key)
        self._write(writer, request, edits)

    def _write(self, writer, request: SaveRequest, edits: int) -> None:
        try:
            details = {**request.details, "edits": edits} if edits > 1 else request.details
            mask_id = writer.annotations.save_mask(
                request.image_id, request.class_id, request.mask, source=request.source,
                action=request.action, details=details or None,
            )
        except Exception as exc:  # noqa: BLE001 - shown to the user through ``failed``
            self.failed.emit(request.image_id, f"The mask of image {request.image_id} was not saved: {exc}",
                             traceback.format_exc())
        else:
            self.saved.emit(request.image_id, mask_id)

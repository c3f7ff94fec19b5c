"""Annotate mode: brush, eraser, polygon, fill, lasso and box tools on the viewer.

``AnnotateController`` attaches to the viewer's ``canvas`` (the item group in
full-resolution image pixels, so rotation/flip/zoom apply to the overlay too) and
adds two items there: an RGBA mask overlay that is repainted only in the dirty
rectangle of each dab, and an invisible input catcher that takes the left button
while a drawing tool is active (the view box keeps wheel zoom and right-drag W/L).

Each image has its own QUndoStack (in one QUndoGroup) of ``MaskEditCommand``s that
store only the changed rectangle; the history survives switching images (it starts
afresh when the class or the edited source changes).  The mask is saved when a stroke
ends (and on undo/redo), so there is no "save" to forget: a ``MaskSaver`` writes it on
a background thread, in order, and is flushed before a mask is read back, when the
image or project changes and when the window closes.  The edited mask is the current
user's ``human`` mask of the current class — or, after "Redraw" in the adjudication
view, the ``adjudicated`` one.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QUndoGroup, QUndoStack

from mskstudio.gui.annotate.live import DraftItem, mask_size_text, outline_size_text, rect_size_text
from mskstudio.gui.annotate.tools import (
    AddBoxCommand,
    InputCatcher,
    MaskEditCommand,
    MaskSaver,
    OverlayPainter,
    SaveRequest,
)
from mskstudio.imaging import masks as M

TOOLS = ("brush", "eraser", "polygon", "fill", "lasso", "box")
VERTEX_HALF = 4.0  # screen pixels
CLOSE_PX = 8.0  # a click this many screen pixels from the first vertex closes the polygon


class AnnotateController(QObject):
    mask_saved = Signal(int, int)  # image id, mask id (after the background write)
    save_failed = Signal(int, str, str)  # image id, message, details
    boxes_changed = Signal(int)  # image id
    tool_changed = Signal(str)
    source_changed = Signal(str)  # the edited mask's source: human | adjudicated
    size_changed = Signal(str)  # the lesion's size while drawing (longest diameter, area)
    stack_changed = Signal()  # the open image's annotation history changed or was replaced

    def __init__(self, parent=None, *, undo_group: QUndoGroup | None = None,
                 base_stack: QUndoStack | None = None, background_save: bool = True):
        super().__init__(parent)
        self.saver = MaskSaver(self, background=background_save)
        self.saver.saved.connect(self.mask_saved)
        self.saver.failed.connect(self.save_failed)
        self.source = "human"
        # Inside the main window the group is the window's own (Edit › Undo): strokes of
        # the open image are undone while a tool is active, project edits otherwise.
        self.base_stack = base_stack
        self.viewer = None
        self.canvas = None
        self.project = None
        self.image_id: int | None = None
        self.shape: tuple[int, int] | None = None
        self.class_id: int | None = None
        self.tool: str | None = None
        self.radius = 20.0
        self.mask: np.ndarray | None = None
        self.undo_group = undo_group or QUndoGroup(self)
        self.stacks: dict[int, QUndoStack] = {}
        self._stack_keys: dict[int, tuple[int, str]] = {}  # image -> (class, source) of its history
        self.painter: OverlayPainter | None = None
        self.catcher: InputCatcher | None = None
        self._recorder: M.StrokeRecorder | None = None
        self._last: tuple[float, float] | None = None
        self._points: list[tuple[float, float]] = []
        self._erase = False
        self.spacing: tuple[float, float] | None = None  # (row, col) mm of the open image
        self.draft: DraftItem | None = None

    # ---- wiring ------------------------------------------------------------------------
    def attach(self, viewer) -> None:
        """Attach to a ``Viewer`` (uses ``viewer.canvas``, ``viewer.project``, ``image_loaded``)."""
        self.viewer = viewer
        self.attach_canvas(viewer.canvas, viewer.project)
        viewer.image_loaded.connect(lambda image_id: self.set_image(image_id, project=viewer.project))
        viewer.view.installEventFilter(self)  # Enter closes a polygon, Esc drops it

    def eventFilter(self, obj, ev) -> bool:
        if ev.type() in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress) and self.drafting():
            key = ev.key()
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Escape):
                ev.accept()
                if ev.type() == QEvent.Type.KeyPress:
                    self.close_polygon() if key != Qt.Key.Key_Escape else self.cancel_draft()
                return True
        return False

    def drafting(self) -> bool:
        return self.tool == "polygon" and bool(self._points)

    def attach_canvas(self, canvas, project=None) -> None:
        self.canvas = canvas
        self.project = project
        self.saver.set_project(project)

    def set_project(self, project) -> None:
        self.saver.set_project(project)  # pending saves of the old project land first
        self.project = project
        for stack in self.stacks.values():  # strokes of another project cannot be undone here
            self.undo_group.removeStack(stack)
            stack.deleteLater()
        self.stacks.clear()
        self._stack_keys.clear()
        self.image_id = None
        self.class_id = None
        self.source = "human"
        self._activate_stack()

    def flush(self) -> bool:
        """Block until every stroke is in the store (True), or the writer timed out (False)."""
        return self.saver.flush()

    def set_class(self, class_id: int) -> None:
        self.class_id = int(class_id)
        if self.image_id is not None:
            self._load_mask()

    def edit_source(self, source: str) -> None:
        """Edit the user's ``human`` mask (default) or ``adjudicated`` mask of the current class."""
        if source not in ("human", "adjudicated"):
            raise ValueError(f"masks of source {source!r} are not edited by hand")
        self.source = source
        if self.image_id is not None:
            self._load_mask()
        self.source_changed.emit(source)

    def set_tool(self, tool: str | None) -> None:
        if tool is not None and tool not in TOOLS:
            raise ValueError(f"unknown annotation tool {tool!r}")
        self.tool = tool
        self.cancel_draft()
        if self.catcher is not None:
            self.catcher.set_active(tool is not None, hover=tool == "polygon")
        self._activate_stack()
        self.tool_changed.emit(tool or "")

    def cancel_draft(self) -> None:
        """Drop the polygon or box being drawn (nothing was saved yet)."""
        self._points = []
        if self.draft is not None:
            self.draft.clear()

    def _activate_stack(self) -> None:
        stack = self.stack
        if self.base_stack is not None and (self.tool is None or stack is None):
            stack = self.base_stack
        if stack is not None:
            self.undo_group.setActiveStack(stack)

    def set_radius(self, radius: float) -> None:
        self.radius = max(0.5, float(radius))

    def set_image(self, image_id: int, project=None) -> None:
        if project is not None and project is not self.project:
            self.saver.set_project(project)
            self.project = project
        self.flush()
        if self.source != "human" and image_id != self.image_id:
            self.source = "human"  # a redraw belongs to the image it was started on
            self.source_changed.emit(self.source)
        image = self.project.images.record(image_id)
        self.cancel_draft()  # an outline belongs to the image it was started on
        self.image_id = int(image_id)
        self.shape = image.shape
        self.spacing = image.spacing
        if self.class_id is None:
            self.class_id = self.project.annotations.classes()[0].id
        if self.painter is None:
            self.painter = OverlayPainter(self.canvas, self.shape)
            self.catcher = InputCatcher(self.shape, self.handle, self.canvas)
            self.catcher.set_active(self.tool is not None, hover=self.tool == "polygon")
            self.draft = DraftItem(self.canvas)
        else:
            self.catcher.set_shape(self.shape)
        stack = self.stacks.get(self.image_id)
        if stack is None:
            stack = self.stacks[self.image_id] = QUndoStack(self.undo_group)
        self._activate_stack()
        self._load_mask()
        self.stack_changed.emit()

    @property
    def stack(self) -> QUndoStack | None:
        return self.stacks.get(self.image_id) if self.image_id is not None else None

    def _load_mask(self) -> None:
        self.flush()  # the store must hold every stroke before it is read back
        ann = self.project.annotations
        mask_id = ann.find_mask(self.image_id, self.class_id, source=self.source)
        self.mask = ann.load_mask(mask_id) if mask_id else np.zeros(self.shape, bool)
        color = next((c.color for c in ann.classes() if c.id == self.class_id), None) or "#e6194b"
        self.painter.set_color(color)
        self.painter.full_update(self.mask)
        # Undo history belongs to one (image, class, source): returning to an image keeps
        # it (the reloaded mask equals the one the strokes left), a class switch clears it.
        key = (self.class_id, self.source)
        if self.stack is not None and self._stack_keys.get(self.image_id) != key:
            self.stack.clear()
            self._stack_keys[self.image_id] = key
        self.report_mask_size()

    def report_mask_size(self) -> None:
        if self.mask is not None:
            self.size_changed.emit(mask_size_text(self.mask, self.spacing))

    def current_mask(self) -> np.ndarray:
        return self.mask

    def save(self, mask: np.ndarray) -> None:
        """Hand a snapshot to the background writer (the GUI thread only copies the array)."""
        adjudicated = self.source == "adjudicated"
        self.saver.submit(SaveRequest(
            self.image_id, self.class_id, self.source, mask.copy(),
            action="mask.adjudicate" if adjudicated else "mask.save",
            details={"method": "redraw"} if adjudicated else {},
        ))

    def repaint(self, rect) -> None:
        self.painter.update_rect(self.mask, rect)

    # ---- input -------------------------------------------------------------------------
    def handle(self, kind: str, pos: tuple[float, float], modifiers=Qt.KeyboardModifier.NoModifier) -> None:
        """Mouse input in image pixels (also the entry point tests drive)."""
        if self.tool is None or self.mask is None:
            return
        x, y = pos
        if self.tool in ("brush", "eraser"):
            self._brush(kind, x, y, bool(modifiers & Qt.KeyboardModifier.ShiftModifier))
        elif self.tool == "lasso":
            self._lasso(kind, x, y)
        elif self.tool == "polygon":
            self._polygon(kind, x, y)
        elif self.tool == "fill" and kind == "press":
            self.fill_at(x, y)
        elif self.tool == "box":
            self._box(kind, x, y)

    def _brush(self, kind: str, x: float, y: float, shift: bool) -> None:
        value = (self.tool == "brush") != shift
        if kind == "press":
            self._recorder = M.StrokeRecorder(self.mask)
            self._erase = not value
            self.repaint(self._recorder.dab(x, y, self.radius, value))
            self._last = (x, y)
        elif kind == "move" and self._recorder is not None:
            self.repaint(self._recorder.line(self._last, (x, y), self.radius, not self._erase))
            self._last = (x, y)
        elif kind == "release" and self._recorder is not None:
            diff = self._recorder.finish()
            self._recorder = None
            if diff is not None:
                self.stack.push(
                    MaskEditCommand(
                        "Erase" if self._erase else "Brush", self.current_mask, diff, self.save, self.repaint
                    )
                )
                self.report_mask_size()

    def _lasso(self, kind: str, x: float, y: float) -> None:
        if kind == "press":
            self._points = [(x, y)]
        elif kind == "move" and self._points:
            self._points.append((x, y))
            self.draft.show_polygon(self._points)
            self.size_changed.emit(outline_size_text(self._points, self.spacing))
        elif kind == "release" and len(self._points) >= 3:
            pts = self._points + [(x, y)]
            self.cancel_draft()
            self.fill_polygon(pts, "Lasso")
        elif kind == "release":
            self.cancel_draft()

    def _screen_px(self) -> float:
        """One screen pixel in image pixels (the close distance does not depend on zoom)."""
        zoom = self.viewer.zoom_factor() if self.viewer is not None else 1.0
        return 1.0 / max(zoom, 1e-6)

    def _polygon(self, kind: str, x: float, y: float) -> None:
        px = self._screen_px()
        if kind == "press":
            first = self._points[0] if self._points else None
            if len(self._points) >= 3 and np.hypot(x - first[0], y - first[1]) < CLOSE_PX * px:
                self.close_polygon()
                return
            self._points.append((x, y))
        elif kind == "double":
            self.close_polygon()
            return
        if self._points and kind in ("press", "hover", "move"):
            self.draft.show_polygon(self._points, (x, y), VERTEX_HALF * px)
            self.size_changed.emit(outline_size_text(self._points + [(x, y)], self.spacing))

    def close_polygon(self) -> None:
        """Fill the polygon drawn so far (Enter, a double click, or a click on its first vertex);
        the next click starts a new polygon wherever it is."""
        pts = self._points
        self.cancel_draft()
        if len(pts) >= 3:
            self.fill_polygon(pts, "Polygon")

    def fill_polygon(self, points, text: str = "Polygon", value: bool = True) -> None:
        pts = np.asarray(points, float)
        rect = (
            int(np.floor(pts[:, 0].min())),
            int(np.floor(pts[:, 1].min())),
            int(np.ceil(pts[:, 0].max())) + 1,
            int(np.ceil(pts[:, 1].max())) + 1,
        )
        self._region_edit(text, lambda m: M.fill_polygon(m, points, value), rect)

    def fill_at(self, x: float, y: float, value: bool = True) -> None:
        """Flood-fill the closed outline around (x, y)."""
        h, w = self.shape
        if not (0 <= int(x) < w and 0 <= int(y) < h) or bool(self.mask[int(y), int(x)]) == value:
            return
        region = M.flood_region(self.mask, x, y)

        def op(m):
            m[region] = value
            return M.bbox(region)

        self._region_edit("Fill", op, M.bbox(region))

    def merge_mask(self, other: np.ndarray, text: str = "Fill box with model") -> None:
        """OR ``other`` into the mask being edited: one undoable edit, saved like a stroke."""
        if self.mask is None or other.shape != self.mask.shape:
            return
        rect = M.bbox(other & ~self.mask)

        def op(m):
            m |= other
            return rect

        self._region_edit(text, op, rect)

    def _region_edit(self, text: str, op, rect) -> None:
        if rect is None:
            return
        rec = M.StrokeRecorder(self.mask)
        rec.touch(rect)
        self.repaint(op(self.mask))
        diff = rec.finish()
        if diff is not None:
            self.stack.push(MaskEditCommand(text, self.current_mask, diff, self.save, self.repaint))
        self.report_mask_size()

    def _box(self, kind: str, x: float, y: float) -> None:
        if kind == "press":
            self._points = [(x, y)]
        elif kind == "move" and self._points:
            rect = (*self._points[0], x, y)
            self.draft.show_rect(rect)
            self.size_changed.emit(rect_size_text(rect, self.spacing))
        elif kind == "release" and self._points:
            (x0, y0) = self._points[0]
            self.cancel_draft()
            h, w = self.shape
            rect = (max(0, min(x0, x)), max(0, min(y0, y)), min(w, max(x0, x)), min(h, max(y0, y)))
            if rect[2] - rect[0] >= 2 and rect[3] - rect[1] >= 2:
                self.stack.push(
                    AddBoxCommand(
                        self.project,
                        self.image_id,
                        self.class_id,
                        rect,
                        lambda: self.boxes_changed.emit(self.image_id),
                    )
                )

    def box_from_mask(self) -> bool:
        """A box around the edited mask of the current class (one undoable edit); False when
        the mask is empty."""
        if self.mask is None or self.image_id is None:
            return False
        rect = M.bbox(self.mask)
        if rect is None:
            self.size_changed.emit("Box from mask: the mask of this class is empty")
            return False
        self.stack.push(AddBoxCommand(self.project, self.image_id, self.class_id, rect,
                                      lambda: self.boxes_changed.emit(self.image_id), text="Box from mask"))
        self.size_changed.emit(rect_size_text(rect, self.spacing))
        return True

    def undo(self) -> None:
        self.undo_group.undo()

    def redo(self) -> None:
        self.undo_group.redo()

    def detach(self) -> None:
        if self.painter is not None:
            self.painter.remove()
        if self.catcher is not None and self.catcher.scene() is not None:
            self.catcher.scene().removeItem(self.catcher)
        self.painter = self.catcher = None



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
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QKeySequence, QUndoGroup, QUndoStack
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

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


class AnnotateController(QObject):
    mask_saved = Signal(int, int)  # image id, mask id (after the background write)
    save_failed = Signal(int, str, str)  # image id, message, details
    boxes_changed = Signal(int)  # image id
    tool_changed = Signal(str)
    source_changed = Signal(str)  # the edited mask's source: human | adjudicated

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

    # ---- wiring ------------------------------------------------------------------------
    def attach(self, viewer) -> None:
        """Attach to a ``Viewer`` (uses ``viewer.canvas``, ``viewer.project``, ``image_loaded``)."""
        self.viewer = viewer
        self.attach_canvas(viewer.canvas, viewer.project)
        viewer.image_loaded.connect(lambda image_id: self.set_image(image_id, project=viewer.project))

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
        self._points = []
        if self.catcher is not None:
            self.catcher.set_active(tool is not None)
        self._activate_stack()
        self.tool_changed.emit(tool or "")

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
        row = self.project.images.get(image_id)
        self.image_id = int(image_id)
        self.shape = (int(row["rows"]), int(row["cols"]))
        if self.class_id is None:
            self.class_id = self.project.annotations.classes()[0]["id"]
        if self.painter is None:
            self.painter = OverlayPainter(self.canvas, self.shape)
            self.catcher = InputCatcher(self.shape, self.handle, self.canvas)
            self.catcher.set_active(self.tool is not None)
        else:
            self.catcher.set_shape(self.shape)
        stack = self.stacks.get(self.image_id)
        if stack is None:
            stack = self.stacks[self.image_id] = QUndoStack(self.undo_group)
        self._activate_stack()
        self._load_mask()

    @property
    def stack(self) -> QUndoStack | None:
        return self.stacks.get(self.image_id) if self.image_id is not None else None

    def _load_mask(self) -> None:
        self.flush()  # the store must hold every stroke before it is read back
        ann = self.project.annotations
        mask_id = ann.find_mask(self.image_id, self.class_id, source=self.source)
        self.mask = ann.load_mask(mask_id) if mask_id else np.zeros(self.shape, bool)
        color = next((c["color"] for c in ann.classes() if c["id"] == self.class_id), None) or "#e6194b"
        self.painter.set_color(color)
        self.painter.full_update(self.mask)
        # Undo history belongs to one (image, class, source): returning to an image keeps
        # it (the reloaded mask equals the one the strokes left), a class switch clears it.
        key = (self.class_id, self.source)
        if self.stack is not None and self._stack_keys.get(self.image_id) != key:
            self.stack.clear()
            self._stack_keys[self.image_id] = key

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

    def _lasso(self, kind: str, x: float, y: float) -> None:
        if kind == "press":
            self._points = [(x, y)]
        elif kind == "move" and self._points:
            self._points.append((x, y))
        elif kind == "release" and len(self._points) >= 3:
            pts = self._points + [(x, y)]
            self._points = []
            self.fill_polygon(pts, "Lasso")

    def _polygon(self, kind: str, x: float, y: float) -> None:
        if kind == "press":
            if len(self._points) >= 3 and np.hypot(x - self._points[0][0], y - self._points[0][1]) < 6:
                self.close_polygon()
            else:
                self._points.append((x, y))
        elif kind == "double":
            self.close_polygon()

    def close_polygon(self) -> None:
        pts, self._points = self._points, []
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

    def _box(self, kind: str, x: float, y: float) -> None:
        if kind == "press":
            self._points = [(x, y)]
        elif kind == "release" and self._points:
            (x0, y0), self._points = self._points[0], []
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


# "F" is Fit and "A" the angle tool in the main window, so fill is "G" (the bucket key of paint programs).
SHORTCUTS = {"brush": "B", "eraser": "E", "polygon": "P", "fill": "G", "lasso": "L", "box": "X"}


class AnnotatePanel(QWidget):
    """Tool buttons, mask class, brush radius, undo/redo, "accept model mask" and "fill boxes
    with model" (``fill_requested``: the dock runs it as a job) for a controller."""

    fill_requested = Signal()

    def __init__(self, controller: AnnotateController, parent=None, *, undo_shortcuts: bool = True):
        super().__init__(parent)
        self.ctl = controller
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        self.group = QButtonGroup(self)
        self.group.setExclusive(False)
        self.buttons: dict[str, QToolButton] = {}
        for tool in TOOLS:
            b = QToolButton(text=tool.capitalize(), checkable=True)
            b.setToolTip(f"{tool} ({SHORTCUTS[tool]}); shift inverts brush/eraser")
            b.setShortcut(QKeySequence(SHORTCUTS[tool]))
            b.toggled.connect(lambda on, t=tool: self._toggle(t, on))
            self.group.addButton(b)
            self.buttons[tool] = b
            row.addWidget(b)
        layout.addLayout(row)
        form = QFormLayout()
        self.classes = QComboBox()
        self.classes.currentIndexChanged.connect(self._class_changed)
        form.addRow("Class", self.classes)
        self.radius = QSpinBox(minimum=1, maximum=500, value=int(controller.radius), suffix=" px")
        self.radius.valueChanged.connect(controller.set_radius)
        form.addRow("Brush radius", self.radius)
        layout.addLayout(form)
        row = QHBoxLayout()
        undo = controller.undo_group.createUndoAction(self, "Undo")
        redo = controller.undo_group.createRedoAction(self, "Redo")
        if undo_shortcuts:  # in the main window Edit › Undo owns Ctrl+Z for the same group
            undo.setShortcut(QKeySequence.StandardKey.Undo)
            redo.setShortcut(QKeySequence.StandardKey.Redo)
            self.addActions([undo, redo])
        for action in (undo, redo):
            b = QToolButton()
            b.setDefaultAction(action)
            row.addWidget(b)
        self.accept_btn = QPushButton("Accept model mask")
        self.accept_btn.clicked.connect(self.accept_model_mask)
        row.addWidget(self.accept_btn)
        self.fill_btn = QPushButton("Fill boxes with model")
        self.fill_btn.setToolTip("Segment inside this image's boxes of the class with the box segmenter "
                                 "(Model › Train box segmenter…); one undoable edit")
        self.fill_btn.clicked.connect(self.fill_requested.emit)
        row.addWidget(self.fill_btn)
        layout.addLayout(row)
        # Shown while the adjudicated mask is edited (Redraw in the adjudication view).
        row = QHBoxLayout()
        self.source_label = QLabel("Editing the <b>adjudicated</b> (final) mask")
        self.back_btn = QPushButton("Back to my mask")
        self.back_btn.clicked.connect(lambda: controller.edit_source("human"))
        row.addWidget(self.source_label, 1)
        row.addWidget(self.back_btn)
        layout.addLayout(row)
        layout.addStretch(1)
        controller.tool_changed.connect(self._tool_changed)
        controller.source_changed.connect(self._source_changed)
        self._source_changed(controller.source)

    def refresh_classes(self) -> None:
        if self.ctl.project is None:
            return
        self.classes.blockSignals(True)
        self.classes.clear()
        for c in self.ctl.project.annotations.classes():
            self.classes.addItem(c["name"], c["id"])
        self.classes.blockSignals(False)
        if self.ctl.class_id is not None:
            self.classes.setCurrentIndex(max(0, self.classes.findData(self.ctl.class_id)))

    def _class_changed(self, index: int) -> None:
        if index >= 0:
            self.ctl.set_class(self.classes.itemData(index))

    def _toggle(self, tool: str, on: bool) -> None:
        if on:
            self.ctl.set_tool(tool)
        elif self.ctl.tool == tool:
            self.ctl.set_tool(None)

    def _tool_changed(self, tool: str) -> None:
        for name, b in self.buttons.items():
            b.blockSignals(True)
            b.setChecked(name == tool)
            b.blockSignals(False)

    def _source_changed(self, source: str) -> None:
        self.source_label.setVisible(source == "adjudicated")
        self.back_btn.setVisible(source == "adjudicated")

    def accept_model_mask(self) -> None:
        ctl = self.ctl
        if ctl.image_id is None:
            return
        ctl.flush()  # a pending stroke must not land on top of the accepted mask
        rows = [
            r
            for r in ctl.project.annotations.masks_of(ctl.image_id, source="model")
            if r["class_id"] == ctl.class_id
        ]
        if rows:
            ctl.project.annotations.accept_model_mask(rows[0]["id"])
            ctl._load_mask()

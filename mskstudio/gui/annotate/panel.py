"""The Annotate panel: tool buttons, mask class, brush radius, the open image's annotation
undo/redo, the lesion's live size, "box from mask", "accept model mask" and "fill boxes with
model", driving an ``AnnotateController`` (``controller.py``)."""

from __future__ import annotations

import shiboken6
from PySide6.QtCore import Signal
from PySide6.QtGui import QAction, QKeySequence
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

from mskstudio.gui.annotate.controller import TOOLS, AnnotateController

__all__ = ["AnnotateController", "AnnotatePanel", "SHORTCUTS", "TOOLS"]

# "F" is Fit and "A" the angle tool in the main window, so fill is "G" (the bucket key of paint programs).
SHORTCUTS = {"brush": "B", "eraser": "E", "polygon": "P", "fill": "G", "lasso": "L", "box": "X"}


class AnnotatePanel(QWidget):
    """Tool buttons, mask class, brush radius, undo/redo, "accept model mask" and "fill boxes
    with model" (``fill_requested``: the dock runs it as a job) for a controller."""

    fill_requested = Signal()
    detector_boxes_requested = Signal()

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
        self.size_label = QLabel("")  # the lesion's size while drawing
        self.size_label.setWordWrap(True)
        controller.size_changed.connect(self.size_label.setText)
        layout.addWidget(self.size_label)
        row = QHBoxLayout()
        # The annotation history of the open image only: the window's Edit › Undo also
        # reaches project edits ("Undo Split cluster into 2"), which a surgeon annotating
        # must not take back from here.
        self.undo_action = QAction("Undo", self)
        self.redo_action = QAction("Redo", self)
        self.undo_action.triggered.connect(lambda: self._stack_do("undo"))
        self.redo_action.triggered.connect(lambda: self._stack_do("redo"))
        if undo_shortcuts:  # in the main window Edit › Undo owns Ctrl+Z
            self.undo_action.setShortcut(QKeySequence.StandardKey.Undo)
            self.redo_action.setShortcut(QKeySequence.StandardKey.Redo)
            self.addActions([self.undo_action, self.redo_action])
        for action in (self.undo_action, self.redo_action):
            b = QToolButton()
            b.setDefaultAction(action)
            row.addWidget(b)
        self._watched_stacks: set[int] = set()
        controller.stack_changed.connect(self._sync_undo)
        self._sync_undo()
        self.box_from_mask_btn = QPushButton("Box from mask")
        self.box_from_mask_btn.setToolTip("A box around this image's mask of the class (undoable)")
        self.box_from_mask_btn.clicked.connect(controller.box_from_mask)
        row.addWidget(self.box_from_mask_btn)
        row.addStretch(1)
        layout.addLayout(row)
        # A second row: five buttons in one made the dock (and so the right column) ~600 px
        # wide, which left the image about 350 px on a 1366 px screen.
        row = QHBoxLayout()
        self.accept_btn = QPushButton("Accept model mask")
        self.accept_btn.clicked.connect(self.accept_model_mask)
        row.addWidget(self.accept_btn)
        row.addStretch(1)
        self.fill_btn = QPushButton("Fill boxes with model")
        self.fill_btn.setToolTip("Segment inside this image's boxes of the class with the box segmenter "
                                 "(Model › Train box segmenter…); one undoable edit")
        self.fill_btn.clicked.connect(self.fill_requested.emit)
        self.detector_btn = QPushButton("Boxes from detector")
        self.detector_btn.setToolTip("This image's boxes from the latest lesion detector run, in the chosen "
                                     "class (accepted predictions, audited); then Fill boxes with model")
        self.detector_btn.clicked.connect(self.detector_boxes_requested.emit)
        layout.addLayout(row)
        row = QHBoxLayout()  # box -> mask in two clicks, side by side (own row: the dock stays narrow)
        row.addWidget(self.detector_btn)
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

    def _stack_do(self, what: str) -> None:
        stack = self.ctl.stack
        if stack is not None:
            getattr(stack, what)()
            self.ctl.report_mask_size()

    def _sync_undo(self, *_args) -> None:
        """Undo/Redo name the open image's last annotation edit (or are disabled)."""
        stack = self.ctl.stack
        if stack is not None and not shiboken6.isValid(stack):
            stack = None  # the window is closing: its stacks go first
        if stack is not None and id(stack) not in self._watched_stacks:
            self._watched_stacks.add(id(stack))
            stack.indexChanged.connect(self._sync_undo)
        can_undo = stack is not None and stack.canUndo()
        can_redo = stack is not None and stack.canRedo()
        self.undo_action.setEnabled(can_undo)
        self.redo_action.setEnabled(can_redo)
        self.undo_action.setText(f"Undo {stack.undoText()}" if can_undo else "Undo")
        self.redo_action.setText(f"Redo {stack.redoText()}" if can_redo else "Redo")

    def refresh_classes(self) -> None:
        if self.ctl.project is None:
            return
        self.classes.blockSignals(True)
        self.classes.clear()
        for c in self.ctl.project.annotations.classes():
            self.classes.addItem(c.name, c.id)
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
            if r.class_id == ctl.class_id
        ]
        if rows:
            ctl.project.annotations.accept_model_mask(rows[0].id)
            ctl._load_mask()

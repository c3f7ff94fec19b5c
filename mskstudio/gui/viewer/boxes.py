"""The stored boxes of the open image on the viewer: drawn for every source, editable, undoable.

A mixin of ``Viewer`` (like ``MeasurementLayer``).  Each box of ``annotations.boxes_of`` is a
pyqtgraph ``RectROI`` under the viewer's ``canvas`` (full-resolution image pixels, so rotation
and flips apply): a click selects it, a drag moves it, the corner handles resize it, Delete
(or its menu) removes it.  Every edit is an undo command that writes the store at once; the
line style says where the box came from (solid: a person, dashed: imported, dotted: a model).
``box_events.changed(project, image_id)`` tells every viewer to redraw after any box edit
(drawn with the Box tool, from a mask, undone, …).
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QColor, QPen, QUndoCommand
from PySide6.QtWidgets import QWidget

from mskstudio.domain import Box

SOURCE_STYLE = {"human": Qt.PenStyle.SolidLine, "import": Qt.PenStyle.DashLine,
                "model": Qt.PenStyle.DotLine}
SELECTED = QColor("#4fc3f7")


class BoxEvents(QObject):
    """Box edits of any view, and the new id of a box whose delete was undone."""

    changed = Signal(object, int)  # project, image id

    def __init__(self):
        super().__init__()
        self.renamed: dict[int, int] = {}

    def current_id(self, box_id: int) -> int:
        while box_id in self.renamed:
            box_id = self.renamed[box_id]
        return box_id


box_events = BoxEvents()


class EditBoxCommand(QUndoCommand):
    """Move or resize a stored box (``before`` and ``after`` are x0, y0, x1, y1)."""

    def __init__(self, project, image_id: int, box_id: int, before, after, text: str = "Move box"):
        super().__init__(text)
        self.project, self.image_id, self.box_id = project, image_id, box_id
        self.before, self.after = tuple(before), tuple(after)
        self.error: BaseException | None = None

    def _set(self, rect) -> None:
        try:
            self.project.annotations.set_box(box_events.current_id(self.box_id), rect)
        except (KeyError, ValueError) as exc:
            self.error = exc
        box_events.changed.emit(self.project, self.image_id)

    def redo(self) -> None:
        self._set(self.after)

    def undo(self) -> None:
        self._set(self.before)


class DeleteBoxCommand(QUndoCommand):
    """Delete a stored box; undo adds it back (same image, class, annotator, source, rectangle)."""

    def __init__(self, project, row: Box):
        super().__init__(f"Delete box ({row.class_name or 'box'})")
        self.project, self.row = project, row
        self.box_id = int(row.id)
        self.error: BaseException | None = None

    def redo(self) -> None:
        self.project.annotations.delete_box(box_events.current_id(self.box_id))
        box_events.changed.emit(self.project, self.row.image_id)

    def undo(self) -> None:
        r = self.row
        new = self.project.annotations.add_box(r.image_id, r.class_id, r.rect, annotator=r.annotator,
                                               source=r.source)
        box_events.renamed[box_events.current_id(self.box_id)] = new
        box_events.changed.emit(self.project, r.image_id)


class BoxItem(pg.RectROI):
    """One stored box: movable and resizable (four corner handles) unless read-only."""

    def __init__(self, row: Box, host, editable: bool):
        x0, y0, x1, y1 = row.rect
        self.row, self.host = row, host
        self.color = QColor(row.color or "#42d4f4")
        super().__init__((x0, y0), (x1 - x0, y1 - y0), centered=False, sideScalers=False,
                         movable=editable, resizable=editable, removable=False, rotatable=False,
                         pen=self._pen(False))
        if editable:
            for pos, center in (((0, 0), (1, 1)), ((1, 0), (0, 1)), ((0, 1), (1, 0))):
                self.addScaleHandle(pos, center)
        self.setAcceptedMouseButtons(Qt.MouseButton.LeftButton)
        self.sigClicked.connect(lambda *_: host.select_box(self))
        self.sigRegionChangeStarted.connect(lambda *_: host.select_box(self))
        self.sigRegionChangeFinished.connect(lambda *_: host.box_moved(self))
        self.label = pg.TextItem(f"{row.class_name} · {row.source}", color=self.color, anchor=(0, 1),
                                 fill=pg.mkBrush(0, 0, 0, 150))
        self.label.setParentItem(self)
        self.setZValue(50)

    @property
    def box_id(self) -> int:
        return int(self.row.id)

    def _pen(self, selected: bool) -> QPen:
        pen = QPen(SELECTED if selected else self.color, 2.5 if selected else 2.0)
        pen.setStyle(SOURCE_STYLE.get(self.row.source, Qt.PenStyle.SolidLine))
        pen.setCosmetic(True)
        return pen

    def set_selected(self, selected: bool) -> None:
        self.setPen(self._pen(selected))
        self.currentPen = self.pen

    def rect_xyxy(self) -> tuple[float, float, float, float]:
        p, s = self.pos(), self.size()
        x0, y0, x1, y1 = p.x(), p.y(), p.x() + s.x(), p.y() + s.y()
        return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)

    def stored_xyxy(self) -> tuple[float, float, float, float]:
        return self.row.rect


class BoxLayer:
    box_items: list
    selected_box: BoxItem | None = None
    _box_sync = False

    def load_boxes(self) -> None:
        """Draw the stored boxes of the open image (as it opens and after any box edit)."""
        if not self._box_sync:
            box_events.changed.connect(self._boxes_changed)
            self._box_sync = True
        selected = self.selected_box.box_id if self.selected_box is not None else None
        self.set_boxes([])
        self.selected_box = None
        if self.project is None or self.image_id is None:
            return
        editable = self._boxes_editable()
        for row in self.project.annotations.boxes_of(self.image_id):
            item = BoxItem(row, self, editable)
            item.setParentItem(self.canvas)
            item.setVisible(self.overlays_shown)
            self.box_items.append(item)
            if item.box_id == selected:
                self.select_box(item)

    def _boxes_editable(self) -> bool:
        """Whether the shown boxes may be moved, resized and deleted (a reading window's
        own draft boxes may, while its project view is otherwise read-only)."""
        return self.project is not None and not self.project.readonly

    def stored_boxes(self) -> list[BoxItem]:
        return [b for b in self.box_items if isinstance(b, BoxItem)]

    def _boxes_changed(self, project, image_id: int) -> None:
        if project is self.project and image_id == self.image_id:
            self.load_boxes()

    def select_box(self, item: BoxItem | None) -> None:
        self.selected_box = item
        for b in self.stored_boxes():
            b.set_selected(b is item)
        if item is not None:
            self.setFocus()  # Delete now deletes this box

    def _box_stack(self):
        stack = self.measurement_undo_stack
        return stack if stack is not None else getattr(QWidget.window(self), "undo_stack", None)

    def _push_box(self, cmd) -> None:
        stack = self._box_stack()
        if stack is None:
            cmd.redo()
        else:
            stack.push(cmd)

    def box_moved(self, item: BoxItem) -> None:
        """A drag or a resize ended: commit the new rectangle (one undoable edit)."""
        before, after = item.stored_xyxy(), item.rect_xyxy()
        if max(abs(a - b) for a, b in zip(before, after, strict=True)) < 0.5:
            return
        text = "Resize box" if abs((after[2] - after[0]) - (before[2] - before[0])) > 0.5 else "Move box"
        self._push_box(EditBoxCommand(self.project, self.image_id, item.box_id, before, after, text))

    def delete_selected_box(self) -> bool:
        item = self.selected_box
        if item is None or not self._boxes_editable():
            return False
        self.selected_box = None
        self._push_box(DeleteBoxCommand(self.project, item.row))
        return True

    def keyPressEvent(self, ev):
        if ev.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and self.selected_box is not None:
            ev.accept()
            self.delete_selected_box()
            return
        super().keyPressEvent(ev)

"""Measurements of the viewer: rulers and angles saved per image, editable and undoable.

A mixin of ``Viewer`` (like ``OverlayLayers``): items are children of the viewer's
``canvas`` in full-resolution image pixels.  Adding, dragging an endpoint (saved when the
drag ends) and deleting (Delete key, context menu, case panel) are undoable commands
from ``case_commands`` that write the project at once.  The items follow the store
through ``measurement_events``, so an undo, or a delete in the case panel, shows here.
"""

from __future__ import annotations

import math

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

from mskstudio.gui.case.commands import (
    AddMeasurementCommand,
    DeleteMeasurementsCommand,
    MoveMeasurementCommand,
    measurement_events,
)
from mskstudio.gui.viewer.tools import Measurement, measurement_menu
from mskstudio.store.repo_measurements import spacing_source_name


class MeasurementLayer:
    measurement_undo_stack = None  # the stack edits go to; None: the window's ``undo_stack``
    selected_measurement: Measurement | None = None
    _measurement_sync = False

    def set_tool(self, tool: str) -> None:
        if tool not in ("pan", "ruler", "angle"):
            raise ValueError(tool)
        self.tool = tool
        self._pending_angle = []
        self.vb.setMouseEnabled(True, True)

    def _measurement_source(self) -> str:
        return "none" if self.row is None else spacing_source_name(self.row.spacing_source, self.spacing())

    def _saves_measurements(self) -> bool:
        return self.project is not None and not self.project.readonly and self.image_id is not None

    def _draft(self, points) -> Measurement:
        """An unsaved item: the ruler being drawn, or any measurement on a read-only project."""
        m = Measurement(self.canvas, points, self.spacing(), self._measurement_source(), host=self)
        self.measurements.append(m)
        return m

    def add_ruler(self, p0, p1) -> Measurement:
        return self._add_measurement("ruler", [p0, p1])

    def add_angle(self, a, vertex, c) -> Measurement:
        return self._add_measurement("angle", [a, vertex, c])

    def _add_measurement(self, kind: str, points) -> Measurement:
        points = [(float(x), float(y)) for x, y in points]
        if not self._saves_measurements():
            return self._draft(points)
        cmd = AddMeasurementCommand(self.project, self.image_id, kind, points)
        if not self._push_measurement_command(cmd):
            return self._draft(points)
        return next(m for m in self.measurements if m.measurement_id == cmd.measurement_id)

    def _push_measurement_command(self, cmd) -> bool:
        self._follow_measurement_events()
        stack = self.measurement_undo_stack
        if stack is None:  # ``self.window`` is the display window/level, hence QWidget.window
            stack = getattr(QWidget.window(self), "undo_stack", None)
        if stack is None:
            cmd.redo()
        else:
            stack.push(cmd)
        if cmd.error is not None:  # shown where the user looks, never swallowed
            self.warning.setText(f"⚠ measurement not saved: {cmd.error}")
            self._place_corners()
            return False
        return True

    def tool_drag(self, start_scene, scene_pos, phase: str) -> None:
        if self.row is None or self.tool != "ruler":
            return
        p = self.to_image(scene_pos)
        if phase == "start":
            self._drag_item = self._draft([self.to_image(start_scene), p])
        elif self._drag_item is not None:
            draft = self._drag_item
            draft.update([draft.points[0], p])
            if phase == "finish":
                self._drag_item = None
                if math.dist(*draft.points) < 1.0:  # a click, not a ruler
                    self._discard(draft)
                elif self._saves_measurements():
                    self._discard(draft)
                    self.select_measurement(self.add_ruler(*draft.points))

    def tool_click(self, scene_pos) -> None:
        if self.row is None:
            return
        self._pending_angle.append(self.to_image(scene_pos))
        if len(self._pending_angle) == 3:
            points, self._pending_angle = self._pending_angle, []
            self.select_measurement(self.add_angle(*points))

    def load_measurements(self) -> None:
        """Show the saved measurements of the image now open (called as an image opens)."""
        self.clear_measurements()
        self._follow_measurement_events()
        self._sync_measurements(self.project, self.image_id)

    def _follow_measurement_events(self) -> None:
        if not self._measurement_sync:
            measurement_events.changed.connect(self._sync_measurements)
            self._measurement_sync = True

    def _sync_measurements(self, project, image_id) -> None:
        """Match the items to the stored rows: update moved ones, add new ones, drop deleted ones."""
        if project is None or project is not self.project or image_id != self.image_id:
            return
        items = {m.measurement_id: m for m in self.measurements if m.measurement_id is not None}
        shown = []
        for row in project.measurements.for_image(image_id):
            m = items.pop(row["id"], None)
            if m is None:
                m = Measurement.from_row(self.canvas, row, host=self)
            else:
                m.apply_row(row)
            shown.append(m)
        for gone in items.values():
            gone.remove()
        self.measurements = shown + [m for m in self.measurements if m.measurement_id is None]
        if self.selected_measurement not in self.measurements:
            self.selected_measurement = None

    def select_measurement(self, m: Measurement | None) -> None:
        self.selected_measurement = m
        for item in self.measurements:
            item.set_selected(item is m)

    def measurement_moved(self, m: Measurement, before) -> None:
        """An endpoint drag ended: save the new points (undoable)."""
        if m.measurement_id is not None and self._saves_measurements():
            self._push_measurement_command(
                MoveMeasurementCommand(self.project, self.image_id, m.measurement_id, before, m.points))

    def delete_measurements(self, items) -> None:
        saved = [m.measurement_id for m in items if m.measurement_id is not None]
        for m in items:
            if m.measurement_id is None:
                self._discard(m)
        if saved and self._saves_measurements():
            self._push_measurement_command(DeleteMeasurementsCommand(self.project, self.image_id, saved))

    def delete_all_measurements(self) -> None:
        self.delete_measurements(list(self.measurements))

    def show_measurement_menu(self, m: Measurement, screen_pos) -> None:
        self.select_measurement(m)
        pos = screen_pos.toPoint() if hasattr(screen_pos, "toPoint") else screen_pos
        measurement_menu(self, m).exec(pos)

    def keyPressEvent(self, ev):
        if ev.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and self.selected_measurement is not None:
            ev.accept()
            self.delete_measurements([self.selected_measurement])
            return
        super().keyPressEvent(ev)

    def _discard(self, m: Measurement) -> None:
        m.remove()
        if m in self.measurements:
            self.measurements.remove(m)

    def clear_measurements(self) -> None:
        """Take the items off the canvas; what is saved stays in the project."""
        for m in self.measurements:
            m.remove()
        self.measurements = []
        self._pending_angle = []
        self.selected_measurement = None

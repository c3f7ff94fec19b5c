"""Undoable edits of labs and measurements: each QUndoCommand's redo/undo calls the store.

The store audits every write; these commands only remember what undo needs.  A
command whose first ``redo`` fails (a duplicate lab name, a read-only project) keeps
the error in ``error`` and marks itself obsolete, so ``QUndoStack.push`` drops it and
the caller shows the message; nothing is swallowed.

Measurements are drawn by the viewer and listed by the case panel; both follow
``measurement_events.changed(project, image_id)``, emitted after every redo and undo,
so an edit made in one place (or undone from the Edit menu) shows in the other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QObject, Signal

from mskstudio.gui.commands import StoreCommand

Callback = Callable[[], None] | None


class MeasurementEvents(QObject):
    changed = Signal(object, int)  # project, image id whose measurements changed


measurement_events = MeasurementEvents()


_Command = StoreCommand  # the base of these commands is the GUI's one undo-command base


# ---- labs ---------------------------------------------------------------------------------
LAB_FIELDS = ("value", "unit", "ref_low", "ref_high", "taken_on")


class AddLabCommand(_Command):
    """A new lab of a patient; undo deletes it again."""

    def __init__(self, project, patient_id: int, name: str, fields: dict[str, Any], on_change: Callback = None):
        super().__init__(f"Add lab {name}", on_change)
        self.project, self.patient_id, self.name = project, patient_id, name.strip()
        self.fields = {k: fields.get(k) for k in LAB_FIELDS}

    def _redo(self) -> None:
        self.project.images.add_lab(self.patient_id, self.name, **self.fields,
                                    audit_action="lab.add" if not self._done_once else "lab.redo")

    def _undo(self) -> None:
        self.project.images.delete_lab(self.patient_id, self.name, audit_action="lab.undo")


class DeleteLabCommand(_Command):
    """Delete a lab; undo puts back its value, unit, normal range and date."""

    def __init__(self, project, patient_id: int, name: str, on_change: Callback = None):
        super().__init__(f"Delete lab {name}", on_change)
        self.project, self.patient_id, self.name = project, patient_id, name
        self.row: dict[str, Any] | None = None

    def _redo(self) -> None:
        self.row = self.project.images.delete_lab(self.patient_id, self.name)
        if self.row is None:
            raise ValueError(f"there is no lab {self.name} to delete")

    def _undo(self) -> None:
        if self.row is not None:
            self.project.images.add_lab(self.patient_id, self.name, **{k: self.row[k] for k in LAB_FIELDS},
                                        audit_action="lab.undo")


# ---- measurements ---------------------------------------------------------------------------
class _MeasurementCommand(_Command):
    def __init__(self, text: str, project, image_id: int):
        super().__init__(text)
        self.project, self.image_id = project, image_id

    def _changed(self) -> None:
        measurement_events.changed.emit(self.project, self.image_id)


class AddMeasurementCommand(_MeasurementCommand):
    """A ruler or angle saved on an image; undo deletes it, redo restores the same id."""

    def __init__(self, project, image_id: int, kind: str, points: Sequence[tuple[float, float]]):
        super().__init__(f"Add {kind}", project, image_id)
        self.kind, self.points = kind, [tuple(p) for p in points]
        self.measurement_id: int | None = None
        self.row: dict[str, Any] | None = None

    def _redo(self) -> None:
        if self.row is None:
            self.measurement_id = self.project.measurements.add(self.image_id, self.kind, self.points)
        else:
            self.project.measurements.restore(self.row)

    def _undo(self) -> None:
        self.row = self.project.measurements.delete(self.measurement_id)


class MoveMeasurementCommand(_MeasurementCommand):
    """New points after an endpoint drag; the store recomputes the values."""

    def __init__(self, project, image_id: int, measurement_id: int, old_points, new_points):
        super().__init__("Move measurement point", project, image_id)
        self.measurement_id = measurement_id
        self.old, self.new = [tuple(p) for p in old_points], [tuple(p) for p in new_points]

    def _redo(self) -> None:
        self.project.measurements.move(self.measurement_id, self.new)

    def _undo(self) -> None:
        self.project.measurements.move(self.measurement_id, self.old)


class DeleteMeasurementsCommand(_MeasurementCommand):
    """Delete some measurements of one image; undo restores them with their ids, authors and times."""

    def __init__(self, project, image_id: int, measurement_ids: Sequence[int]):
        n = len(measurement_ids)
        super().__init__(f"Delete {n} measurement{'s' if n != 1 else ''}", project, image_id)
        self.ids = list(measurement_ids)
        self.rows: list[dict[str, Any]] = []

    def _redo(self) -> None:
        self.rows = self.project.measurements.delete_many(self.ids)

    def _undo(self) -> None:
        self.project.measurements.restore_many(self.rows)

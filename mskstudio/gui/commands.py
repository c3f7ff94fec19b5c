"""Undoable edits: each QUndoCommand's redo/undo calls store methods (commands split ask from do).

Dialogs and editors *ask* (collect the new value); these commands *do* (write the store,
audited by the store itself).  Every command remembers the value it replaces so undo
writes it back; ``on_change`` lets the window refresh views after redo and undo alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtGui import QUndoCommand

Callback = Callable[[], None] | None


class StoreCommand(QUndoCommand):
    """The one base of the GUI's undoable edits (clinical, labs, flags, labels, measurements,
    cluster actions).  Subclasses write ``_redo``/``_undo``.  When the *first* redo fails (a
    duplicate name, a read-only project) the error is kept in ``error`` and the command
    marks itself obsolete, so ``QUndoStack.push`` drops it and the caller shows the message;
    a later failure (redo after undo) propagates.  ``on_change`` runs after every change."""

    def __init__(self, text: str, on_change: Callback = None):
        super().__init__(text)
        self.on_change = on_change
        self.error: Exception | None = None
        self._done_once = False

    def redo(self) -> None:
        try:
            self._redo()
        except Exception as exc:  # noqa: BLE001 - kept for the caller to show, never swallowed
            if self._done_once:
                raise
            self.error = exc
            self.setObsolete(True)
            return
        self._done_once = True
        self._changed()

    def undo(self) -> None:
        self._undo()
        self._changed()

    def _redo(self) -> None:
        raise NotImplementedError

    def _undo(self) -> None:
        raise NotImplementedError

    def _changed(self) -> None:
        if self.on_change:
            self.on_change()


class _StoreCommand(StoreCommand):
    """The older commands below override ``redo``/``undo`` themselves, so a failure still
    reaches the caller of ``push`` as an exception (their callers do not read ``error``)."""


class SetClinicalCommand(_StoreCommand):
    """Set one field of a patient's clinical record."""

    def __init__(self, project, patient_id: int, field: str, new: Any, old: Any = None,
                 on_change: Callback = None):
        super().__init__(f"Edit {field.replace('_', ' ')}", on_change)
        self.project, self.patient_id, self.field = project, patient_id, field
        self.old = project.images.clinical(patient_id).get(field) if old is None else old
        self.new = new

    def redo(self) -> None:
        self.project.images.set_clinical(self.patient_id, {self.field: self.new})
        self._changed()

    def undo(self) -> None:
        self.project.images.set_clinical(self.patient_id, {self.field: self.old},
                                         audit_action="clinical.undo")
        self._changed()


class SetLabCommand(_StoreCommand):
    """Set a lab value (keeping its unit and normal range)."""

    def __init__(self, project, patient_id: int, name: str, value: float | None,
                 unit: str | None = None, ref_low: float | None = None, ref_high: float | None = None,
                 on_change: Callback = None):
        super().__init__(f"Edit lab {name}", on_change)
        self.project, self.patient_id, self.name = project, patient_id, name
        old = next((r for r in project.images.labs(patient_id) if r["name"] == name), None)
        self.old = None if old is None else (old["value"], old["unit"], old["ref_low"], old["ref_high"])
        self.new = (value, unit if unit is not None or old is None else old["unit"],
                    ref_low if ref_low is not None or old is None else old["ref_low"],
                    ref_high if ref_high is not None or old is None else old["ref_high"])

    def redo(self) -> None:
        self.project.images.set_lab(self.patient_id, self.name, *self.new)
        self._changed()

    def undo(self) -> None:
        old = self.old or (None, self.new[1], self.new[2], self.new[3])
        self.project.images.set_lab(self.patient_id, self.name, *old)
        self._changed()


class SetFlagCommand(_StoreCommand):
    """Set an image flag (excluded / is_screenshot / external)."""

    def __init__(self, project, image_ids: list[int], flag: str, value: bool, on_change: Callback = None):
        label = {"excluded": "Exclude", "is_screenshot": "Mark screenshot", "external": "Mark external"}
        verb = label.get(flag, flag) if value else f"Clear {flag.replace('is_', '')}"
        super().__init__(f"{verb} ({len(image_ids)} image{'s' if len(image_ids) != 1 else ''})", on_change)
        self.project, self.flag, self.value = project, flag, bool(value)
        self.old = {i: int(getattr(project.images.record(i), flag)) for i in image_ids}

    def redo(self) -> None:
        for i in self.old:
            self.project.images.set_flag(i, self.flag, self.value)
        self._changed()

    def undo(self) -> None:
        for i, v in self.old.items():
            self.project.images.set_flag(i, self.flag, v)
        self._changed()


class SetLabelCommand(_StoreCommand):
    """A human label for some images in one label set (used by review views)."""

    def __init__(self, project, image_ids: list[int], label_set_id: int, class_id: int,
                 on_change: Callback = None):
        super().__init__(f"Label {len(image_ids)} image(s)", on_change)
        self.project, self.set_id, self.class_id = project, label_set_id, class_id
        self.ids = list(image_ids)
        self.old: dict[int, int] = {}
        for i in self.ids:
            for r in project.labels.labels_of(i):
                if r.label_set_id == label_set_id and r.source == "human":
                    self.old[i] = r.class_id

    def redo(self) -> None:
        self.project.labels.set_labels(self.ids, self.set_id, self.class_id, source="human")
        self._changed()

    def undo(self) -> None:
        fresh = [i for i in self.ids if i not in self.old]
        if fresh:
            self.project.labels.remove_labels(fresh, self.set_id, source="human")
        by_class: dict[int, list[int]] = {}
        for i, c in self.old.items():
            by_class.setdefault(c, []).append(i)
        for c, ids in by_class.items():
            self.project.labels.set_labels(ids, self.set_id, c, source="human")
        self._changed()

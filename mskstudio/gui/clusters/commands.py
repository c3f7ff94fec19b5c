"""QUndoCommands for cluster review: each wraps one ``project.clusters`` action.

The first ``redo`` performs the action and keeps its undo record; ``undo`` restores
the record's snapshot; a later ``redo`` replays the record (clusters a split or a
move-out created get their old ids back, so commands further up the stack that name
them stay valid).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtGui import QUndoCommand


class ClusterActionCommand(QUndoCommand):
    def __init__(self, project, text: str, do: Callable[[], dict[str, Any]],
                 on_change: Callable[[], None] | None = None):
        super().__init__(text)
        self.project = project
        self._do = do
        self.record: dict[str, Any] | None = None
        self.on_change = on_change
        self.error: BaseException | None = None

    def redo(self) -> None:
        if self.record is None:
            try:
                self.record = self._do()
            except Exception as exc:  # surfaced by the board, never swallowed
                self.error = exc
                self.setObsolete(True)
                return
        else:
            self.record = self.project.clusters.redo(self.record)
        self._changed()

    def undo(self) -> None:
        if self.record is not None:
            self.project.clusters.undo(self.record)
        self._changed()

    def _changed(self) -> None:
        if self.on_change:
            self.on_change()

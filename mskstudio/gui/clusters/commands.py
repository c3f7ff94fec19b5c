"""QUndoCommands for cluster review: each wraps one ``project.clusters`` action.

The first ``redo`` performs the action and keeps its undo record; ``undo`` restores
the record's snapshot; a later ``redo`` replays the record (clusters a split or a
move-out created get their old ids back, so commands further up the stack that name
them stay valid).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mskstudio.gui.commands import StoreCommand


class ClusterActionCommand(StoreCommand):
    def __init__(self, project, text: str, do: Callable[[], dict[str, Any]],
                 on_change: Callable[[], None] | None = None):
        super().__init__(text, on_change)
        self.project = project
        self._do = do
        self.record: dict[str, Any] | None = None

    def _redo(self) -> None:
        if self.record is None:  # a first failure is kept in ``error`` and shown by the board
            self.record = self._do()
        else:
            self.record = self.project.clusters.redo(self.record)

    def _undo(self) -> None:
        if self.record is not None:
            self.project.clusters.undo(self.record)

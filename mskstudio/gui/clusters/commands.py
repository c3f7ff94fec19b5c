"""QUndoCommands for cluster review: each wraps one ``project.clusters`` action.

The first ``redo`` performs the action; the store journals it (``cluster_edits``, the one
history the CLI's ``clusters … undo`` walks too) and the command keeps the journal row's id.
``undo`` and later ``redo`` go through that row, and are no-ops when another process (the
CLI) undid or redid the edit already, so the stack can follow the journal (journal_sync.py).
Clusters a split or a move-out created get their old ids back on redo, so commands further
up the stack that name them stay valid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mskstudio.gui.commands import StoreCommand


class ClusterActionCommand(StoreCommand):
    def __init__(self, project, text: str, do: Callable[[], dict[str, Any]] | None = None,
                 on_change: Callable[[], None] | None = None, *, record: dict[str, Any] | None = None,
                 on_refused: Callable[[Exception], None] | None = None):
        """``record``: adopt an edit already done elsewhere (its first redo does nothing)."""
        super().__init__(text, on_change)
        self.project = project
        self._do = do
        self.record: dict[str, Any] | None = record
        self.on_refused = on_refused

    @property
    def edit_id(self) -> int | None:
        return None if self.record is None else self.record.get("edit_id")

    def _redo(self) -> None:
        if self.record is None:  # a first failure is kept in ``error`` and shown by the board
            with self.project.cluster_edits.from_origin("board"):
                self.record = self._do()
        elif self.edit_id is not None:
            again = self.project.cluster_edits.redo_edit(self.edit_id)
            if again is not None:  # None: done already (redone by another process)
                self.record = again
        else:
            self.record = self.project.clusters.redo(self.record)

    def _undo(self) -> None:
        if self.record is None:
            return
        if self.edit_id is None:
            self.project.clusters.undo(self.record)
            return
        try:
            self.project.cluster_edits.undo_edit(self.edit_id)
        except ValueError as exc:  # a later edit from elsewhere, not on this stack yet
            if self.on_refused is None:
                raise
            self.on_refused(exc)

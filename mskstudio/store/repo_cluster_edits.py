"""The one history of cluster review edits, shared by the Clusters board and the CLI.

Every action of ``project.clusters`` (label, discard, merge, split, move out, image labels)
writes a ``cluster_edits`` row with its undo record in the action's own transaction, so a
killed process never leaves an edit without its journal row or a row without its edit.
The history is linear per cluster run, as an undo stack is: ``undo_last`` restores the
latest edit still done, whatever made it (the board, ``mskstudio clusters … undo``, the
demo loop); ``redo_next`` does the earliest undone one again; a new edit drops the undone
ones (the redo side), as pushing onto a QUndoStack does.  The board keeps its QUndoStack as
a view of this journal (gui/clusters/journal_sync.py).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import sqlite3

    from mskstudio.store.project import Project

NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"


class ClusterEditRepo:
    def __init__(self, project: Project):
        self.p = project
        self._local = threading.local()  # the origin of this thread's edits, and a redo in progress
        self._has_table: bool | None = None

    # ---- who is editing --------------------------------------------------------------------
    @property
    def origin(self) -> str:
        return getattr(self._local, "origin", "store")

    @contextmanager
    def from_origin(self, origin: str) -> Iterator[None]:
        """Edits in this block are journalled as made by ``origin`` ('board', 'cli', 'demo')."""
        before = self.origin
        self._local.origin = origin
        try:
            yield
        finally:
            self._local.origin = before

    def available(self) -> bool:
        if self._has_table is None:
            self._has_table = self.p.db.one("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                                            "AND name = 'cluster_edits'") is not None
        return self._has_table

    # ---- writing (called by ClusterRepo inside the action's transaction) -----------------------
    @contextmanager
    def redoing(self, edit_id: int | None) -> Iterator[None]:
        """The action run in this block is the redo of journal row ``edit_id``: it updates that
        row instead of starting a new edit (which would drop the redo side)."""
        before = getattr(self._local, "redoing", None)
        self._local.redoing = edit_id
        try:
            yield
        finally:
            self._local.redoing = before

    def write(self, c: sqlite3.Connection, record: dict[str, Any]) -> None:
        """Journal ``record`` (sets its ``edit_id``); ``c`` is the action's open transaction."""
        if not self.available():
            return
        body = json.dumps({k: v for k, v in record.items() if k != "edit_id"}, default=_plain)
        redo_of = getattr(self._local, "redoing", None)
        if redo_of is not None:
            updated = c.execute(f"UPDATE cluster_edits SET state = 'done', record = ?, changed_at = {NOW} "
                                "WHERE id = ?", (body, redo_of)).rowcount
            if updated:
                record["edit_id"] = int(redo_of)
                return
        c.execute("DELETE FROM cluster_edits WHERE run_id = ? AND state = 'undone'", (record["run_id"],))
        record["edit_id"] = int(c.execute(
            "INSERT INTO cluster_edits(run_id, action, record, origin, author) VALUES (?, ?, ?, ?, ?)",
            (record["run_id"], record["action"], body, self.origin, self.p.author)).lastrowid)

    def before_undo(self, c: sqlite3.Connection, record: dict[str, Any]) -> None:
        """Refuse to undo an edit under a later one still done; mark the edit undone."""
        edit_id = record.get("edit_id")
        if edit_id is None or not self.available():
            return
        later = c.execute("SELECT id, action, origin FROM cluster_edits WHERE run_id = ? AND state = 'done' "
                          "AND id > ? ORDER BY id DESC LIMIT 1", (record["run_id"], edit_id)).fetchone()
        if later is not None:
            raise ValueError(f"cannot undo this {record['action']}: a later {later['action']} "
                             f"(edit {later['id']}, from {later['origin']}) is not undone yet")
        c.execute(f"UPDATE cluster_edits SET state = 'undone', changed_at = {NOW} WHERE id = ?", (edit_id,))

    # ---- reading -------------------------------------------------------------------------------
    def get(self, edit_id: int) -> dict[str, Any] | None:
        row = self.p.db.one("SELECT * FROM cluster_edits WHERE id = ?", (int(edit_id),))
        return None if row is None else _entry(row)

    def history(self, run_id: int | None = None, *, after: int = 0) -> list[dict[str, Any]]:
        """Journal rows (oldest first) of one run or of all, with ``id`` > ``after``."""
        if not self.available():
            return []
        where, args = ("run_id = ? AND id > ?", (run_id, after)) if run_id is not None else ("id > ?", (after,))
        return [_entry(r) for r in self.p.db.query(f"SELECT * FROM cluster_edits WHERE {where} ORDER BY id", args)]

    def states(self) -> dict[int, str]:
        """edit id -> 'done' | 'undone' (cheap: what a view of the journal checks after a change)."""
        if not self.available():
            return {}
        return {r[0]: r[1] for r in self.p.db.query("SELECT id, state FROM cluster_edits")}

    def last_id(self) -> int:
        return int(self.p.db.scalar("SELECT COALESCE(MAX(id), 0) FROM cluster_edits") or 0) \
            if self.available() else 0

    # ---- undo and redo through the journal ------------------------------------------------------
    def undo_edit(self, edit_id: int) -> dict[str, Any] | None:
        """Undo journal row ``edit_id``; None when it is undone already (by another process)."""
        with self.p.db.transaction():
            entry = self.get(edit_id)
            if entry is None or entry["state"] == "undone":
                return None
            self.p.clusters.undo(entry["record"])
            return entry["record"]

    def redo_edit(self, edit_id: int) -> dict[str, Any] | None:
        """Do row ``edit_id`` again; None when it is done already.  Only the earliest undone
        edit of its run can be redone (the history is linear)."""
        with self.p.db.transaction():
            entry = self.get(edit_id)
            if entry is None:
                raise ValueError(f"cluster edit {edit_id} was replaced by a later edit; it cannot be redone")
            if entry["state"] == "done":
                return None
            first = self.p.db.scalar("SELECT MIN(id) FROM cluster_edits WHERE run_id = ? AND state = 'undone'",
                                     (entry["run_id"],))
            if first != entry["id"]:
                raise ValueError(f"redo edit {first} of run {entry['run_id']} first")
            with self.redoing(entry["id"]):
                return self.p.clusters.redo(entry["record"])

    def undo_last(self, run_id: int) -> dict[str, Any] | None:
        """Undo the run's latest edit still done, whatever made it; None when there is none."""
        with self.p.db.transaction():
            edit_id = self.p.db.scalar("SELECT MAX(id) FROM cluster_edits WHERE run_id = ? AND state = 'done'",
                                       (run_id,)) if self.available() else None
            return None if edit_id is None else self.undo_edit(edit_id)

    def redo_next(self, run_id: int) -> dict[str, Any] | None:
        with self.p.db.transaction():
            edit_id = self.p.db.scalar("SELECT MIN(id) FROM cluster_edits WHERE run_id = ? AND state = 'undone'",
                                       (run_id,)) if self.available() else None
            return None if edit_id is None else self.redo_edit(edit_id)


def redo_action(clusters: Any, record: dict[str, Any]) -> dict[str, Any]:
    """Call the ``project.clusters`` (a ClusterRepo) action that ``record`` undid, with its arguments."""
    d, a = record["details"], record["action"]
    if a in ("label", "discard"):
        return clusters.label_cluster(d["clusters"], d["label_set_id"], d["class_id"],
                                      review_seconds=d.get("review_seconds"), discard=a == "discard")
    if a == "merge":
        return clusters.merge([d["into"], *d["clusters"]], d.get("label_set_id"))
    if a == "split":
        return clusters.split(d["cluster"], record["parts"], n=d["n"], new_ids=record["created"])
    if a == "move_out":
        return clusters.move_out(record["run_id"], record["snapshot"]["label_scope"]["image_ids"],
                                 new_id=record["created"][0], label_set=d.get("label_set_id"))
    if a == "label_images":
        return clusters.label_images(record["run_id"], record["snapshot"]["label_scope"]["image_ids"],
                                     d["label_set_id"], d["class_id"])
    raise ValueError(f"unknown cluster action {a!r}")


def _entry(row) -> dict[str, Any]:
    record = json.loads(row["record"])
    record["edit_id"] = int(row["id"])
    return {"id": int(row["id"]), "run_id": int(row["run_id"]), "action": row["action"],
            "origin": row["origin"], "author": row["author"], "state": row["state"],
            "created_at": row["created_at"], "record": record}


def _plain(value: Any) -> Any:
    """numpy scalars and arrays in a record, as JSON numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot journal a {type(value).__name__}")

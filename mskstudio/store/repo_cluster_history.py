"""The undo history of the cluster reviewer's actions (split out of ``repo_clusters``).

An action snapshots the rows it is about to change (clusters, member rows, labels)
and returns an *undo record*; ``undo`` restores the snapshot and removes the clusters
the action created; ``redo`` does the action again with the same created ids.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from mskstudio.store.repo_cluster_edits import redo_action

if TYPE_CHECKING:
    from mskstudio.store.project import Project

CLUSTER_COLUMNS = ("class_id", "discarded", "parent_id", "merged_into", "map_x", "map_y", "spread",
                   "reviewed_at", "review_seconds")
LABEL_COLUMNS = ("id", "image_id", "label_set_id", "class_id", "source", "author", "run_id",
                 "confidence", "created_at", "reader_id")  # reader_id: an undo keeps who labelled


def marks(n: int) -> str:
    return ",".join("?" * n)


def chunks(seq: Sequence[Any], n: int = 500) -> Iterable[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


class ClusterHistory:
    """Snapshot, undo and redo for ``ClusterRepo`` (which provides ``run`` and the actions)."""

    p: Project

    def _snapshot(self, run_id: int, cluster_ids: Sequence[int], image_ids: Sequence[int],
                  label_set_ids: Sequence[int], sources: Sequence[str] = ("cluster",), *,
                  member_ids: Sequence[int] | None = None) -> dict[str, Any]:
        """Rows an action may change: clusters, member rows (``member_ids``, default the
        images) and labels of ``image_ids`` in ``label_set_ids`` from ``sources``."""
        db = self.p.db
        run = self.run(run_id)
        clusters = [dict(r) for r in db.query(
            f"SELECT id, {', '.join(CLUSTER_COLUMNS)} FROM clusters WHERE id IN ({marks(len(cluster_ids))})",
            tuple(cluster_ids))] if cluster_ids else []
        members, labels = [], []
        for part in chunks(list(image_ids if member_ids is None else member_ids)):
            members += [tuple(r) for r in db.query(
                f"SELECT image_id, cluster_id, distance FROM cluster_members WHERE run_id = ? "
                f"AND image_id IN ({marks(len(part))})", (run_id, *part))]
        for part in chunks(list(image_ids)):
            for ls in label_set_ids:
                labels += [dict(r) for r in db.query(
                    f"SELECT {', '.join(LABEL_COLUMNS)} FROM labels WHERE label_set_id = ? "
                    f"AND source IN ({marks(len(sources))}) AND image_id IN ({marks(len(part))})",
                    (ls, *sources, *part))]
        return {"run_label_set_id": run["label_set_id"] if run else None, "clusters": clusters,
                "members": members, "labels": labels,
                "label_scope": {"image_ids": list(image_ids), "label_set_ids": list(label_set_ids),
                                "sources": list(sources)}}

    def _record(self, c: sqlite3.Connection, action: str, run_id: int, snapshot: dict[str, Any],
                created: list[int], details: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """Audit the action and journal its undo record, in the action's transaction ``c``."""
        self.p.audit(f"cluster.{action}", "cluster_run", run_id, {**details, "created": created})
        rec = {"action": action, "run_id": run_id, "created": created, "snapshot": snapshot,
               "details": details, **extra}
        self.p.cluster_edits.write(c, rec)
        return rec

    def undo(self, record: dict[str, Any]) -> None:
        """Restore what an action changed (its snapshot) and remove the clusters it created."""
        snap, run_id = record["snapshot"], record["run_id"]
        scope = snap["label_scope"]
        with self.p.db.transaction() as c:
            self.p.cluster_edits.before_undo(c, record)  # refuses under a later edit; marks it undone
            c.execute("UPDATE cluster_runs SET label_set_id = ? WHERE id = ?",
                      (snap["run_label_set_id"], run_id))
            ids = scope["image_ids"]
            for ls in scope["label_set_ids"]:
                for part in chunks(ids):
                    c.execute(
                        f"DELETE FROM labels WHERE label_set_id = ? AND source IN "
                        f"({marks(len(scope['sources']))}) AND image_id IN ({marks(len(part))})",
                        (ls, *scope["sources"], *part))
            if snap["labels"]:
                c.executemany(
                    f"INSERT INTO labels({', '.join(LABEL_COLUMNS)}) VALUES ({marks(len(LABEL_COLUMNS))})",
                    [tuple(r[k] for k in LABEL_COLUMNS) for r in snap["labels"]])
            c.executemany("UPDATE cluster_members SET cluster_id = ?, distance = ? WHERE run_id = ? "
                          "AND image_id = ?", [(cid, d, run_id, i) for i, cid, d in snap["members"]])
            sets = ", ".join(f"{k} = ?" for k in CLUSTER_COLUMNS)
            c.executemany(f"UPDATE clusters SET {sets} WHERE id = ?",
                          [tuple(r[k] for k in CLUSTER_COLUMNS) + (r["id"],) for r in snap["clusters"]])
            for cid in record["created"]:
                left = c.execute("SELECT COUNT(*) FROM cluster_members WHERE cluster_id = ?",
                                 (cid,)).fetchone()[0]
                if left:
                    raise ValueError(f"cannot undo: cluster {cid} has members added later")
                c.execute("DELETE FROM clusters WHERE id = ?", (cid,))
            self.p.audit(f"cluster.undo_{record['action']}", "cluster_run", run_id,
                         {"created": record["created"], "details": record.get("details")})

    def redo(self, record: dict[str, Any]) -> dict[str, Any]:
        """Do an action again from its record (same created ids); returns the new record, which
        keeps the record's journal row (the edit is done again, not a new one)."""
        with self.p.cluster_edits.redoing(record.get("edit_id")):
            return redo_action(self, record)

"""Model runs: DeepCluster backbones, classifiers, segmenters … and their checkpoints.

A checkpoint is a blob (``torch.save`` bytes written by the job); the row names it
by sha once the blob is on disk, so a crash never leaves a row pointing nowhere.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from mskstudio.domain import MODEL_RUN_STATUSES, ModelRun

if TYPE_CHECKING:
    from mskstudio.store.project import Project

NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
STATUSES = MODEL_RUN_STATUSES
# Columns ``set_fields`` may write, each value given as stored (JSON already encoded).
SETTABLE_FIELDS = ("data_hash", "split", "metrics", "params", "name")
RESUMABLE = ("running", "cancelled", "interrupted", "error")


class ModelRepo:
    def __init__(self, project: Project):
        self.p = project

    def create(self, kind: str, arch: str, *, name: str | None = None,
               params: dict[str, Any] | None = None, parent_run_id: int | None = None,
               label_set_id: int | None = None, job_id: int | None = None) -> int:
        with self.p.db.transaction() as c:
            cur = c.execute(
                "INSERT INTO model_runs(kind, name, arch, label_set_id, parent_run_id, params, job_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (kind, name or f"{kind} {arch}", arch, label_set_id, parent_run_id,
                 json.dumps(params or {}, sort_keys=True, default=str), job_id),
            )
            run_id = int(cur.lastrowid)
            self.p.audit("model_run.create", "model_run", run_id,
                         {"kind": kind, "arch": arch, "parent_run_id": parent_run_id})
        return run_id

    def get(self, run_id: int) -> sqlite3.Row | None:
        return self.p.db.one("SELECT * FROM model_runs WHERE id = ?", (run_id,))

    def list(self, kind: str | None = None) -> list[sqlite3.Row]:
        if kind:
            return self.p.db.query("SELECT * FROM model_runs WHERE kind = ? ORDER BY id DESC", (kind,))
        return self.p.db.query("SELECT * FROM model_runs ORDER BY id DESC")

    def record(self, run_id: int) -> ModelRun | None:
        """The run as a typed record (params, metrics and split parsed), or None."""
        row = self.get(run_id)
        return None if row is None else ModelRun.from_row(row)

    def records(self, kind: str | None = None) -> list[ModelRun]:
        """Typed records of the runs (of ``kind``), newest first."""
        return [ModelRun.from_row(r) for r in self.list(kind)]

    def params(self, run_id: int) -> dict[str, Any]:
        row = self.get(run_id)
        return json.loads(row["params"]) if row and row["params"] else {}

    def metrics(self, run_id: int) -> dict[str, Any]:
        row = self.get(run_id)
        return json.loads(row["metrics"]) if row and row["metrics"] else {}

    def set_checkpoint(self, run_id: int, sha: str, *, metrics: dict[str, Any] | None = None,
                       params: dict[str, Any] | None = None) -> None:
        """Point the run at a new checkpoint blob (written before this call).

        The checkpoint it replaces (an earlier epoch's) is deleted after the commit
        unless another row names the same bytes: without this a 12-epoch DeepCluster
        run left 11 dead checkpoints (about 1 GB for a resnet18) and a 2,000-image
        project that trained a few classifiers grew past 15 GB.  A crash between the
        commit and the delete leaves only an orphan blob.
        """
        with self.p.db.transaction() as c:
            row = c.execute("SELECT checkpoint_sha FROM model_runs WHERE id = ?", (run_id,)).fetchone()
            old = row[0] if row else None
            c.execute("UPDATE model_runs SET checkpoint_sha = ? WHERE id = ?", (sha, run_id))
            if metrics is not None:
                c.execute("UPDATE model_runs SET metrics = ? WHERE id = ?",
                          (json.dumps(metrics, default=str), run_id))
            if params is not None:
                c.execute("UPDATE model_runs SET params = ? WHERE id = ?",
                          (json.dumps(params, sort_keys=True, default=str), run_id))
        if old and old != sha and not self._blob_named(old):
            self.p.blobs.remove(old)

    def _blob_named(self, sha: str) -> bool:
        return bool(self.p.db.scalar(
            "SELECT EXISTS(SELECT 1 FROM model_runs WHERE checkpoint_sha = ?) "
            "OR EXISTS(SELECT 1 FROM images WHERE blob_sha = ?)", (sha, sha)))

    def set_fields(self, run_id: int, **fields: Any) -> None:
        """Write ``SETTABLE_FIELDS`` columns of a run as given, in one transaction."""
        unknown = set(fields) - set(SETTABLE_FIELDS)
        if unknown:
            raise ValueError(f"unknown model run fields: {sorted(unknown)}")
        with self.p.db.transaction() as c:
            for key, value in fields.items():
                c.execute(f"UPDATE model_runs SET {key} = ? WHERE id = ?", (value, run_id))

    def set_status(self, run_id: int, status: str, *, job_id: int | None = None) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown model run status {status!r}")
        finished = status != "running"
        with self.p.db.transaction() as c:
            c.execute(
                f"UPDATE model_runs SET status = ?, finished_at = CASE WHEN ? THEN {NOW} ELSE NULL END, "
                "job_id = COALESCE(?, job_id) WHERE id = ?",
                (status, int(finished), job_id, run_id),
            )
            self.p.audit("model_run.status", "model_run", run_id, {"status": status})

    def for_job(self, job_id: int, kind: str | None = None) -> sqlite3.Row | None:
        sql = "SELECT * FROM model_runs WHERE job_id = ?"
        args: tuple = (job_id,)
        if kind:
            sql += " AND kind = ?"
            args += (kind,)
        return self.p.db.one(sql + " ORDER BY id DESC LIMIT 1", args)

    def latest_resumable(self, kind: str) -> sqlite3.Row | None:
        marks = ",".join("?" for _ in RESUMABLE)
        return self.p.db.one(
            f"SELECT * FROM model_runs WHERE kind = ? AND status IN ({marks}) "
            "AND checkpoint_sha IS NOT NULL ORDER BY id DESC LIMIT 1", (kind, *RESUMABLE))

    # ---- predictions -----------------------------------------------------------------
    def save_predictions(self, run_id: int, rows: Iterable[tuple[int, int, float, str, int]]) -> int:
        """Upsert (image_id, class_id, confidence, probs JSON, rejected) rows of a run; returns how many."""
        rows = [(run_id, *r) for r in rows]
        with self.p.db.transaction() as c:
            c.executemany(
                "INSERT INTO predictions(model_run_id, image_id, class_id, confidence, probs, rejected) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(model_run_id, image_id) DO UPDATE SET "
                "class_id = excluded.class_id, confidence = excluded.confidence, probs = excluded.probs, "
                f"rejected = excluded.rejected, created_at = {NOW}", rows)
        return len(rows)

    def predictions(self, run_id: int) -> list[sqlite3.Row]:
        """Stored prediction rows of a run by image id (``probs`` still JSON text)."""
        return self.p.db.query(
            "SELECT * FROM predictions WHERE model_run_id = ? ORDER BY image_id", (run_id,))

    def prediction_count(self, run_id: int | None = None) -> int:
        """Stored predictions of one model run, or of every run."""
        if run_id is None:
            return int(self.p.db.scalar("SELECT COUNT(*) FROM predictions"))
        return int(self.p.db.scalar("SELECT COUNT(*) FROM predictions WHERE model_run_id = ?", (run_id,)))

    def referenced_blobs(self) -> set[str]:
        return {r[0] for r in self.p.db.query(
            "SELECT checkpoint_sha FROM model_runs WHERE checkpoint_sha IS NOT NULL")}

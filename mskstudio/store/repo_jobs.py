"""The ``jobs`` table: every long-running piece of work is a row with its life story."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from typing import TYPE_CHECKING, Any

from mskstudio.domain import JOB_FINISHED, Job

if TYPE_CHECKING:
    from mskstudio.store.project import Project

FINISHED = JOB_FINISHED
NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"


class JobRepo:
    # Writing every progress tick would make a fast job spend its time in fsync; the
    # row is refreshed at most this often (the live view gets every tick by signal).
    PROGRESS_WRITE_INTERVAL_S = 0.5

    def __init__(self, project: Project):
        self.p = project
        self._last_write: dict[int, float] = {}

    def submit(self, kind: str, params: dict[str, Any] | None = None) -> int:
        with self.p.db.transaction() as c:
            cur = c.execute(
                "INSERT INTO jobs(kind, params) VALUES (?, ?)",
                (kind, json.dumps(params or {}, sort_keys=True, default=str)),
            )
            return int(cur.lastrowid)

    def get(self, job_id: int) -> sqlite3.Row | None:
        return self.p.db.one("SELECT * FROM jobs WHERE id = ?", (job_id,))

    def record(self, job_id: int) -> Job | None:
        """The job as a typed record (params and result parsed), or None."""
        row = self.get(job_id)
        return None if row is None else Job.from_row(row)

    def records(self, limit: int = 500) -> list[Job]:
        return [Job.from_row(r) for r in self.list(limit)]

    def params(self, job_id: int) -> dict[str, Any]:
        row = self.get(job_id)
        return json.loads(row["params"]) if row else {}

    def list(self, limit: int = 500) -> list[sqlite3.Row]:
        return self.p.db.query("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,))

    def started(self, job_id: int) -> None:
        with self.p.db.transaction() as c:
            c.execute(
                f"UPDATE jobs SET status = 'running', started_at = {NOW}, pid = ?, error = NULL "
                "WHERE id = ?",
                (os.getpid(), job_id),
            )

    def progress(self, job_id: int, fraction: float, message: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_write.get(job_id, 0.0) < self.PROGRESS_WRITE_INTERVAL_S:
            return
        self._last_write[job_id] = now
        with self.p.db.transaction() as c:
            c.execute(
                "UPDATE jobs SET progress = ?, message = ? WHERE id = ?", (fraction, message, job_id)
            )

    def metric(self, job_id: int, name: str, value: float, step: int) -> None:
        with self.p.db.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO job_metrics(job_id, name, step, value) VALUES (?, ?, ?, ?)",
                (job_id, name, step, value),
            )

    def metrics(self, job_id: int) -> dict[str, list[tuple[int, float]]]:
        out: dict[str, list[tuple[int, float]]] = {}
        for r in self.p.db.query(
            "SELECT name, step, value FROM job_metrics WHERE job_id = ? ORDER BY name, step", (job_id,)
        ):
            out.setdefault(r["name"], []).append((r["step"], r["value"]))
        return out

    def finish(self, job_id: int, status: str, *, error: str | None = None, result: Any = None,
               message: str | None = None) -> None:
        """Final status; ``message`` is the last progress message, which the throttled
        progress writes may not have stored yet."""
        if status not in FINISHED:
            raise ValueError(f"not a final job status: {status}")
        self._last_write.pop(job_id, None)
        with self.p.db.transaction() as c:
            c.execute(
                f"UPDATE jobs SET status = ?, error = ?, result = ?, finished_at = {NOW}, "
                "message = COALESCE(?, message), "
                "progress = CASE WHEN ? = 'done' THEN 1.0 ELSE progress END WHERE id = ?",
                (status, error, None if result is None else json.dumps(result, default=str),
                 message, status, job_id),
            )

    def last_result(self, kind: str) -> Any:
        """Decoded result of the latest finished ('done') job of ``kind``, or None."""
        text = self.p.db.scalar(
            "SELECT result FROM jobs WHERE kind = ? AND status = 'done' ORDER BY id DESC LIMIT 1", (kind,))
        return json.loads(text) if text else None

    def was_resumed(self, job_id: int) -> bool:
        """Whether a later job was submitted to resume ``job_id``."""
        return self.p.db.scalar(
            "SELECT COUNT(*) FROM jobs WHERE json_extract(params, '$.resume_of') = ?", (job_id,)) > 0

    # ---- import failures ----------------------------------------------------------------
    def record_failure(self, job_id: int | None, path: str, reason: str) -> None:
        """A file an import skipped, with why."""
        with self.p.db.transaction() as c:
            c.execute("INSERT INTO import_failures(job_id, path, reason) VALUES (?, ?, ?)",
                      (job_id, path, reason))

    def failures(self, job_id: int | None = None) -> list[sqlite3.Row]:
        """(job_id, path, reason) rows of skipped files, of one job or all, oldest first."""
        if job_id is None:
            return self.p.db.query("SELECT job_id, path, reason FROM import_failures ORDER BY id")
        return self.p.db.query(
            "SELECT job_id, path, reason FROM import_failures WHERE job_id = ? ORDER BY id", (job_id,))

    def mark_interrupted(self) -> list[int]:
        """Jobs left 'running' by a process that no longer exists were interrupted by a crash."""
        stale = [
            r["id"]
            for r in self.p.db.query("SELECT id, pid FROM jobs WHERE status = 'running'")
            if not _alive(r["pid"])
        ]
        if stale:
            with self.p.db.transaction() as c:
                c.executemany(
                    f"UPDATE jobs SET status = 'interrupted', finished_at = {NOW}, "
                    "error = 'the process running this job ended unexpectedly' WHERE id = ?",
                    [(i,) for i in stale],
                )
        return stale

    def interrupted(self) -> list[sqlite3.Row]:
        return self.p.db.query("SELECT * FROM jobs WHERE status = 'interrupted' ORDER BY id")

    def resubmit(self, job_id: int) -> int:
        """A fresh row with the same kind and params; resumable jobs pick up their checkpoint."""
        row = self.get(job_id)
        if row is None:
            raise KeyError(job_id)
        params = json.loads(row["params"])
        params["resume_of"] = job_id
        return self.submit(row["kind"], params)


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    if pid == os.getpid():
        return True  # this very process (e.g. reopened within the GUI): not a crash
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

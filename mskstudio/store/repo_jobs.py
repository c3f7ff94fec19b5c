"""The ``jobs`` table: every long-running piece of work is a row with its life story."""

from __future__ import annotations

import json
import math
import os
import sqlite3
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mskstudio.domain import JOB_FINISHED, Job

if TYPE_CHECKING:
    from mskstudio.store.project import Project

FINISHED = JOB_FINISHED
# Model runs marked 'running' whose job has stopped: nobody is training them any more.
_ORPHAN_RUNS = ("SELECT m.id FROM model_runs m JOIN jobs j ON j.id = m.job_id "
                "WHERE m.status = 'running' AND j.status NOT IN ('running', 'submitted')")
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
        """Record one figure of one step.  An undefined figure (nan, e.g. the loss of an empty
        validation part) is not a point of a curve: SQLite would store NaN as NULL, which the
        column refuses, and the job would die of a figure it cannot plot anyway."""
        if not math.isfinite(value):
            return
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
        """Jobs left 'running' by a process that no longer exists were interrupted by a crash.

        A pid alone can be reused by an unrelated process after a reboot or a long
        uptime, so a live pid only counts when that process started before the job did
        (``process_alive``).  The model runs those jobs were writing are marked
        'interrupted' too, so no run stays 'running' with nobody training it.
        """
        stale = [
            r["id"]
            for r in self.p.db.query("SELECT id, pid, started_at FROM jobs WHERE status = 'running'")
            if not process_alive(r["pid"], r["started_at"])
        ]
        if stale or self.p.db.scalar(_ORPHAN_RUNS.replace("SELECT m.id", "SELECT COUNT(*)")):
            self.interrupt(stale)
        if stale and not self.p.db.scalar("SELECT COUNT(*) FROM jobs WHERE status = 'running'"):
            self.collect_orphan_blobs()
        return stale

    def settle_after_failure(self) -> None:
        """After a job failed for lack of disk (or a read-only one): no model run stays
        'running' behind a job that stopped, and, when no job of any process is running,
        the blobs the failed job wrote but no row names are deleted."""
        self.interrupt([])
        if not self.p.db.scalar("SELECT COUNT(*) FROM jobs WHERE status = 'running'"):
            self.collect_orphan_blobs()

    def collect_orphan_blobs(self) -> int:
        """Delete blobs that no row names and half-written blob files; returns how many.

        Only safe while no job writes blobs: a blob is on disk before the row naming it
        commits.  Called after a crash when no job of any process is running.
        """
        referenced = {r[0] for r in self.p.db.query(
            "SELECT blob_sha FROM images WHERE blob_sha IS NOT NULL "
            "UNION SELECT checkpoint_sha FROM model_runs WHERE checkpoint_sha IS NOT NULL")}
        removed = 0
        for path in self.p.blobs.orphans(referenced, partial=True):
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    def interrupt(self, job_ids: list[int],
                  reason: str = "the process running this job ended unexpectedly (killed or crashed)") -> None:
        """Mark jobs whose process died 'interrupted', and every unfinished model run whose
        job is no longer running with them: nothing is left 'running' with nobody behind it."""
        with self.p.db.transaction() as c:
            c.executemany(
                f"UPDATE jobs SET status = 'interrupted', finished_at = {NOW}, error = ? "
                "WHERE id = ? AND status IN ('running', 'submitted')",
                [(reason, i) for i in job_ids],
            )
            orphans = [r[0] for r in c.execute(_ORPHAN_RUNS)]
            for run_id in orphans:
                c.execute(f"UPDATE model_runs SET status = 'interrupted', finished_at = {NOW} WHERE id = ?",
                          (run_id,))
                self.p.audit("model_run.status", "model_run", run_id, {"status": "interrupted"})

    def resume_root(self, job_id: int) -> int:
        """The first job of a chain of resumes: ``resume_of`` of ``job_id``, of that job, …

        Work a killed job finished (``io.resume_marks``) is filed under this id, so a
        resume of a resume still finds what the first job did."""
        seen = {int(job_id)}
        current = int(job_id)
        while True:
            prev = self.params(current).get("resume_of")
            if prev is None or int(prev) in seen:
                return current
            current = int(prev)
            seen.add(current)

    def interrupted(self) -> list[sqlite3.Row]:
        return self.p.db.query("SELECT * FROM jobs WHERE status = 'interrupted' ORDER BY id")

    def resubmit(self, job_id: int) -> int:
        """A fresh row with the same kind and params that continues the same work.

        ``resume_of`` names the job; where that job was writing a model run that is not
        finished, ``resume`` names the run, so a trainer continues it at its next epoch
        (the same parameter the CLI's ``--resume RUN`` sets) instead of starting a new run.
        """
        row = self.get(job_id)
        if row is None:
            raise KeyError(job_id)
        params = json.loads(row["params"])
        params["resume_of"] = job_id
        run = self.p.db.one(
            "SELECT id, status FROM model_runs WHERE job_id = ? ORDER BY id DESC LIMIT 1", (job_id,))
        if run is not None and run["status"] != "done":
            params["resume"] = int(run["id"])
        return self.submit(row["kind"], params)


def process_alive(pid: int | None, started_at: str | None = None) -> bool:
    """Whether ``pid`` is a live process that could be the one that started a job at
    ``started_at`` (ISO UTC, as the jobs table stores it)."""
    if not pid:
        return False
    if pid == os.getpid():
        return True  # this very process (e.g. reopened within the GUI): not a crash
    if sys.platform == "win32":
        return _alive_windows(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    born = _process_start_epoch(pid)
    job_start = _iso_epoch(started_at)
    # A process that began after the job did is a reused pid. 2 s of slack: the clock
    # tick of /proc and the job row's millisecond timestamp.
    return born is None or job_start is None or born <= job_start + 2.0


def _process_start_epoch(pid: int) -> float | None:
    """Start time of a process in seconds since the epoch, from /proc (Linux); None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, after the (comm) field
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _iso_epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _alive_windows(pid: int) -> bool:
    # os.kill(pid, 0) would terminate the process on Windows: ask the kernel instead.
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return False
    try:
        code = ctypes.c_ulong()
        return bool(kernel32.GetExitCodeProcess(handle, ctypes.byref(code))) and code.value == 259
    finally:
        kernel32.CloseHandle(handle)

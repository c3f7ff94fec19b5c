"""The one GUI job runner: job functions off the GUI thread, a fixed signal vocabulary.

Two lanes:

* the **heavy lane** (training-type kinds in ``jobrun.HEAVY_KINDS``) is a queue run one job at
  a time in a subprocess ``python -m mskstudio run-job PROJECT JOB_ID --jsonl`` (QProcess),
  so torch threads never starve the event loop; SIGTERM asks it to stop, a hard kill
  follows after ``kill_after_s``;
* the **light lane** runs the other kinds on a QThreadPool with
  ``jobrun.run_job(own_project, job_id, sink=…, token=…)``; every worker opens its own
  ``Project`` (own SQLite connection) on the same folder.

Each job has a ``JobHandle`` with the signals ``started, progress(fraction, message, eta),
metric(name, value, step), log(message), returned(result), errored(message, details),
cancelled, finished``; the runner re-emits them with the job id first (``job_progress`` …)
so a jobs view can follow all jobs.  Workers never touch widgets.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections import deque
from typing import Any

from PySide6.QtCore import (
    QObject,
    QProcess,
    QProcessEnvironment,
    QThreadPool,
    QTimer,
    Signal,
    Slot,
)

from mskstudio.jobrun import HEAVY_KINDS
from mskstudio.jobs import Cancelled, CancelToken


class JobHandle(QObject):
    started = Signal()
    progress = Signal(float, str, object)   # fraction, message, eta seconds or None
    metric = Signal(str, float, int)
    log = Signal(str)
    returned = Signal(object)
    errored = Signal(str, str)              # message, details (traceback / stderr)
    cancelled = Signal()
    finished = Signal()

    def __init__(self, job_id: int, kind: str, lane: str, parent: QObject | None = None):
        super().__init__(parent)
        self.job_id, self.kind, self.lane = job_id, kind, lane
        self.token = CancelToken()
        self.state = "queued"   # queued | running | done | error | cancelled
        self.fraction, self.message, self.eta = 0.0, "", None
        self.logs: deque[str] = deque(maxlen=200)
        self.result: Any = None
        self.error: tuple[str, str] | None = None
        self.process: QProcess | None = None
        self.started.connect(lambda: setattr(self, "state", "running"))
        self.progress.connect(self._on_progress)
        self.log.connect(self.logs.append)
        self.returned.connect(lambda r: (setattr(self, "result", r), setattr(self, "state", "done")))
        self.errored.connect(lambda m, d: (setattr(self, "error", (m, d)), setattr(self, "state", "error")))
        self.cancelled.connect(lambda: setattr(self, "state", "cancelled"))

    def _on_progress(self, fraction: float, message: str, eta: object) -> None:
        self.fraction, self.message, self.eta = fraction, message, eta

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")


class _QtSink:
    """Job sink for the thread lane: reports become queued signals to the GUI thread."""

    def __init__(self, handle: JobHandle):
        self.h = handle

    def on_progress(self, fraction, message, eta_s):
        self.h.progress.emit(float(fraction), str(message), eta_s)

    def on_metric(self, name, value, step):
        self.h.metric.emit(str(name), float(value), int(step))

    def on_log(self, message):
        self.h.log.emit(str(message))


class _ThreadJob:
    """A light-lane job.  A plain callable handed to the pool, not a QRunnable subclass,
    so no Python-subclassed Qt object is deleted on a worker thread (see image_loader)."""

    def __init__(self, root, handle: JobHandle):
        self.root, self.h = root, handle

    def run(self) -> None:  # worker thread
        from mskstudio.jobrun import run_job
        from mskstudio.store import Project

        h = self.h
        try:
            if h.token.cancelled:
                raise Cancelled()
            project = Project.open(self.root)
        except Cancelled:
            h.cancelled.emit()
            h.finished.emit()
            return
        except Exception as exc:
            h.errored.emit(str(exc), traceback.format_exc())
            h.finished.emit()
            return
        try:
            h.started.emit()
            result = run_job(project, h.job_id, sink=_QtSink(h), token=h.token)
        except Cancelled:
            h.cancelled.emit()
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the GUI
            h.errored.emit(str(exc) or type(exc).__name__, "".join(traceback.format_exception(exc)))
        else:
            h.returned.emit(result)
        finally:
            project.close()
            h.finished.emit()


class JobRunner(QObject):
    job_submitted = Signal(int)
    job_started = Signal(int)
    job_progress = Signal(int, float, str, object)
    job_metric = Signal(int, str, float, int)
    job_log = Signal(int, str)
    job_returned = Signal(int, object)
    job_errored = Signal(int, str, str)
    job_cancelled = Signal(int)
    job_finished = Signal(int)

    kill_after_s = 5.0

    def __init__(self, project=None, parent: QObject | None = None, *, light_threads: int = 2):
        super().__init__(parent)
        self.project = project
        self.handles: dict[int, JobHandle] = {}
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(light_threads)
        self.heavy_queue: deque[JobHandle] = deque()
        self.heavy_current: JobHandle | None = None
        # What starts a heavy job; tests point it at a host that registers test kinds.
        self.subprocess_prefix: list[str] = [sys.executable, "-m", "mskstudio"]
        self.heavy_kinds = set(HEAVY_KINDS)

    # ---- submitting ------------------------------------------------------------------
    def set_project(self, project) -> None:
        if self.active_jobs():
            raise RuntimeError("jobs are still running")
        self.project = project

    def submit(self, kind: str, params: dict | None = None, *, lane: str | None = None) -> int:
        """Write the job row, then run it in its lane; returns the job id."""
        if self.project is None:
            raise RuntimeError("no project open")
        job_id = self.project.jobs.submit(kind, params or {})
        self.run_existing(job_id, lane=lane)
        return job_id

    def run_existing(self, job_id: int, *, lane: str | None = None) -> JobHandle:
        row = self.project.jobs.get(job_id)
        kind = row["kind"]
        lane = lane or ("heavy" if kind in self.heavy_kinds else "light")
        h = JobHandle(job_id, kind, lane, self)
        self.handles[job_id] = h
        self._relay(h)
        self.job_submitted.emit(job_id)
        if lane == "heavy":
            self.heavy_queue.append(h)
            self._next_heavy()
        else:
            self.pool.start(_ThreadJob(self.project.root, h).run)
        return h

    def handle(self, job_id: int) -> JobHandle | None:
        return self.handles.get(job_id)

    def active_jobs(self) -> list[JobHandle]:
        return [h for h in self.handles.values() if h.active]

    def _relay(self, h: JobHandle) -> None:
        j = h.job_id
        h.started.connect(lambda: self.job_started.emit(j))
        h.progress.connect(lambda f, m, e: self.job_progress.emit(j, f, m, e))
        h.metric.connect(lambda n, v, s: self.job_metric.emit(j, n, v, s))
        h.log.connect(lambda m: self.job_log.emit(j, m))
        h.returned.connect(lambda r: self.job_returned.emit(j, r))
        h.errored.connect(lambda m, d: self.job_errored.emit(j, m, d))
        h.cancelled.connect(lambda: self.job_cancelled.emit(j))
        h.finished.connect(lambda: self.job_finished.emit(j))

    # ---- heavy lane: one subprocess at a time -----------------------------------------
    def _next_heavy(self) -> None:
        if self.heavy_current is not None:
            return
        while self.heavy_queue:
            h = self.heavy_queue.popleft()
            if h.token.cancelled:  # cancelled while waiting: never started
                self.project.jobs.finish(h.job_id, "cancelled")
                h.cancelled.emit()
                h.finished.emit()
                continue
            self.heavy_current = h
            self._start_process(h)
            return

    def _start_process(self, h: JobHandle) -> None:
        proc = QProcess(self)
        h.process = proc
        h._stdout_buf, h._stderr = b"", deque(maxlen=400)
        h._got_final = False
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        proc.setProcessEnvironment(env)
        proc.readyReadStandardOutput.connect(lambda: self._read_stdout(h))
        proc.readyReadStandardError.connect(
            lambda: h._stderr.extend(
                bytes(proc.readAllStandardError()).decode("utf-8", "replace").splitlines()))
        proc.finished.connect(lambda code, status: self._process_finished(h, code, status))
        proc.errorOccurred.connect(lambda err: self._process_error(h, err))
        args = self.subprocess_prefix[1:] + ["run-job", str(self.project.root), str(h.job_id), "--jsonl"]
        proc.start(self.subprocess_prefix[0], args)
        h.started.emit()

    def _read_stdout(self, h: JobHandle) -> None:
        h._stdout_buf += bytes(h.process.readAllStandardOutput())
        *lines, h._stdout_buf = h._stdout_buf.split(b"\n")
        for raw in lines:
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                h.log.emit(line)
                continue
            t = msg.get("type")
            if t == "progress":
                h.progress.emit(float(msg.get("fraction", 0.0)), str(msg.get("message") or ""),
                                msg.get("eta_s"))
            elif t == "metric":
                h.metric.emit(str(msg["name"]), float(msg["value"]), int(msg.get("step", 0)))
            elif t == "log":
                h.log.emit(str(msg.get("message", "")))
            elif t == "returned":
                h._got_final = True
                h.returned.emit(msg.get("result"))
            elif t == "error":
                h._got_final = True
                h._error_message = str(msg.get("message", ""))

    def _process_finished(self, h: JobHandle, code: int, status) -> None:
        if h.process is None:
            return
        self._read_stdout(h)
        h._stderr.extend(bytes(h.process.readAllStandardError()).decode("utf-8", "replace").splitlines())
        row = self.project.jobs.get(h.job_id)
        db_status = row["status"] if row else None
        if h.state == "done":
            pass
        elif h.token.cancelled or db_status == "cancelled":
            if db_status in ("running", "submitted"):  # hard-killed before it could record it
                self.project.jobs.finish(h.job_id, "cancelled")
            h.cancelled.emit()
        else:
            message = getattr(h, "_error_message", "") or f"the job process exited with code {code}"
            details = "\n".join(h._stderr) or (row["error"] if row else "") or message
            if db_status in ("running", "submitted") and status == QProcess.ExitStatus.CrashExit:
                # Killed (kill -9, out of memory): resumable like a crash of the whole app.
                self.project.jobs.interrupt([h.job_id], f"the job process was killed: {message}")
            elif db_status in ("running", "submitted"):
                self.project.jobs.finish(h.job_id, "error", error=f"{message}\n\n{details}")
            h.errored.emit(message, details)
        h.process.deleteLater()
        h.process = None
        h.finished.emit()
        self.heavy_current = None
        self._next_heavy()

    def _process_error(self, h: JobHandle, err) -> None:
        if err == QProcess.ProcessError.FailedToStart and h.process is not None:
            proc, h.process = h.process, None
            msg = f"could not start {self.subprocess_prefix[0]}: {proc.errorString()}"
            self.project.jobs.finish(h.job_id, "error", error=msg)
            h.errored.emit(msg, msg)
            h.finished.emit()
            self.heavy_current = None
            self._next_heavy()

    # ---- cancel and shutdown ------------------------------------------------------------
    def cancel(self, job_id: int) -> None:
        h = self.handles.get(job_id)
        if h is None or not h.active:
            return
        h.token.cancel()
        if h.lane == "heavy":
            if h.process is not None:
                h.process.terminate()  # SIGTERM: cooperative cancel in the child
                proc = h.process
                QTimer.singleShot(int(self.kill_after_s * 1000), lambda: self._hard_kill(h, proc))
            elif h in self.heavy_queue:
                self.heavy_queue.remove(h)
                self.project.jobs.finish(h.job_id, "cancelled")
                h.cancelled.emit()
                h.finished.emit()

    def _hard_kill(self, h: JobHandle, proc: QProcess) -> None:
        if h.process is proc and proc.state() != QProcess.ProcessState.NotRunning:
            proc.kill()

    def cancel_all(self) -> None:
        for h in list(self.handles.values()):
            if h.active:
                self.cancel(h.job_id)

    @Slot()
    def shutdown(self, timeout_s: float = 10.0) -> bool:
        """Cancel everything and wait (used when the window closes); True if all stopped."""
        for h in list(self.heavy_queue):
            self.cancel(h.job_id)
        self.cancel_all()
        ok = True
        h = self.heavy_current
        if h is not None and h.process is not None:
            proc = h.process
            if not proc.waitForFinished(int(self.kill_after_s * 1000)):
                proc.kill()
                ok = proc.waitForFinished(int(timeout_s * 1000)) and ok
            if h.process is proc:  # finished signal may not have run yet
                self._process_finished(h, proc.exitCode(), proc.exitStatus())
        ok = self.pool.waitForDone(int(timeout_s * 1000)) and ok
        return ok

"""Import worker processes that one bad file cannot take down.

A damaged file can do three things to a decoder: raise (contained in
``import_worker.process_file``), crash the process (a native decoder's segfault or
abort), or never return.  ``ProcessPoolExecutor`` turns the second into
``BrokenProcessPool`` for every file in flight and has no time limit for the third,
so this small pool keeps its own workers:

* each worker gets at most ``IN_FLIGHT`` paths at a time over its own pipe, so the
  file a dead or stuck worker was on is known exactly;
* a worker that dies is replaced; its current file is recorded as failed with the
  exit signal, the files queued behind it go to the other workers;
* a file that takes longer than ``time_limit_s`` plus ``per_mb_s`` per megabyte gets its
  worker killed and replaced, and is recorded as failed ("took longer than …").  The
  fuzzer found a 3 KB JPEG 2000 file whose decoder works for 28 s and asks for 2.4 GB;
  a 15 MB radiograph decodes in well under a second;
* workers ignore Ctrl-C (the main process turns it into a cancel) and exit when the
  main process dies, even in the middle of a stuck decode.

Two paths in flight per worker keep a worker busy while the main process stores the
previous result, as the executor's queue did (no measurable change on the import
benchmark, see the issue 23 note).
"""

from __future__ import annotations

import contextlib
import multiprocessing.connection as mpc
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from multiprocessing import get_context

IN_FLIGHT = 2
POLL_S = 0.5


def _serve(conn, init_args: tuple, target: Callable[[str], dict]) -> None:
    """Worker process main: decode the paths the pipe brings until told to stop."""
    from mskstudio.io.import_worker import init_worker

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    init_worker(*init_args, worker_process=True)
    while True:
        try:
            path = conn.recv()
        except (EOFError, OSError):
            return
        if path is None:
            return
        result = target(path)
        try:
            conn.send(result)
        except (EOFError, OSError):
            return
        except Exception as exc:  # an unpicklable result: say so instead of dying
            conn.send({"status": "failed", "path": path,
                       "reason": f"result could not be sent back ({type(exc).__name__}: {exc})"})


def _exit_with_parent() -> None:
    """A worker stuck in a decoder must not outlive a killed import."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


class _Worker:
    def __init__(self, mp, init_args: tuple, target: Callable[[str], dict]):
        self.conn, child = mp.Pipe()
        self.proc = mp.Process(target=_serve, args=(child, init_args, target), daemon=True)
        self.proc.start()
        child.close()
        self.queue: deque[tuple[str, float]] = deque()  # (path, time limit) sent, results not back yet
        self.since = time.monotonic()      # when the file at the head of the queue began

    def send(self, path: str, limit_s: float) -> bool:
        """Queue ``path`` on this worker; False if the worker is gone (the caller keeps it)."""
        try:
            self.conn.send(path)
        except OSError:
            return False
        if not self.queue:
            self.since = time.monotonic()
        self.queue.append((path, limit_s))
        return True

    def overdue(self) -> float | None:
        """The time limit of the file at the head of the queue if it has run past it."""
        if self.queue and time.monotonic() - self.since > self.queue[0][1]:
            return self.queue[0][1]
        return None

    def stop(self, timeout: float = 5.0) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.proc.join(timeout)
        self.kill()

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.conn.close()


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"the decoder crashed ({name}); the file was skipped"
    return f"the decoder process ended unexpectedly (exit code {exitcode}); the file was skipped"


def _limit(path: str, time_limit_s: float, per_mb_s: float) -> float:
    try:
        return time_limit_s + per_mb_s * os.path.getsize(path) / 1e6
    except OSError:
        return time_limit_s


def isolated_results(files: list[str], init_args: tuple, workers: int, check_cancelled: Callable[[], None],
                     *, time_limit_s: float, per_mb_s: float = 0.0,
                     target: Callable[[str], dict] | None = None) -> Iterator[dict]:
    """Results of ``target(path)`` for every path, in completion order, each decoded in a
    worker process; crashes and time-outs come back as {'status': 'failed', ...}."""
    if target is None:
        from mskstudio.io.import_worker import process_file as target
    mp = get_context("spawn")  # not fork: the GUI and torch run threads
    pending = deque(files)
    pool = [_Worker(mp, init_args, target) for _ in range(max(1, min(workers, len(files))))]
    try:
        while pending or any(w.queue for w in pool):
            for w in pool:
                while len(w.queue) < IN_FLIGHT and pending:
                    if not w.send(pending[0], _limit(pending[0], time_limit_s, per_mb_s)):
                        break
                    pending.popleft()
            busy = [w for w in pool if w.queue]
            mpc.wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=POLL_S)
            check_cancelled()
            for i, w in enumerate(pool):
                yield from _collect(w)
                if not w.queue and w.proc.is_alive():
                    continue
                if not w.proc.is_alive():
                    failure = _death(w.proc.exitcode)
                elif (limit := w.overdue()) is not None:
                    failure = f"decoding took longer than {limit:.0f} s; the file was skipped"
                else:
                    continue
                if w.queue:
                    yield {"status": "failed", "path": w.queue.popleft()[0], "reason": failure}
                pending.extendleft(path for path, _ in reversed(w.queue))
                w.queue.clear()
                w.kill()
                pool[i] = _Worker(mp, init_args, target)
    finally:
        for w in pool:
            w.stop(timeout=2.0)


def _collect(w: _Worker) -> Iterator[dict]:
    while w.queue:
        try:
            if not w.conn.poll():
                return
            result = w.conn.recv()
        except (EOFError, OSError):
            return
        w.queue.popleft()
        w.since = time.monotonic()
        yield result

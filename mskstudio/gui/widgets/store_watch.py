"""Polls the store's change feed so edits by other processes refresh the open views.

The CLI in a terminal, a job subprocess or a second window write to the same project.db;
the feed (store/changes.py) says which topics moved.  A poll is one ``PRAGMA data_version``
(a few microseconds, no table read, no lock: WAL readers never wait) and, only when another
connection committed, one read of six counters; ``costs`` keeps the last polls' seconds so
a test or a benchmark can report them.  Topics are handed to the window's ``notify_changed``,
which emits the one ``data_changed`` signal every view listens to.
"""

from __future__ import annotations

import sqlite3
import time
from collections import deque

from PySide6.QtCore import QObject, QTimer, Signal

from mskstudio.store.changes import ChangeFeed

INTERVAL_MS = 400  # fast enough to feel immediate, rare enough to cost nothing measurable


class StoreWatch(QObject):
    changed = Signal(object)  # frozenset of topics

    def __init__(self, parent=None, interval_ms: int = INTERVAL_MS):
        super().__init__(parent)
        self.feed: ChangeFeed | None = None
        self.costs: deque[float] = deque(maxlen=256)
        self.timer = QTimer(self, interval=interval_ms)
        self.timer.timeout.connect(self.poll)

    def set_project(self, project) -> None:
        self.feed = ChangeFeed(project) if project is not None else None
        if self.feed is not None and self.feed.available():
            self.timer.start()
        else:
            self.feed = None
            self.timer.stop()

    def poll(self) -> frozenset:
        if self.feed is None:
            return frozenset()
        t0 = time.perf_counter()
        try:
            topics = frozenset(self.feed.poll())
        except sqlite3.Error:  # a closed or vanished project: the window reports that elsewhere
            topics = frozenset()
        self.costs.append(time.perf_counter() - t0)
        if topics:
            self.changed.emit(topics)
        return topics

    def stop(self) -> None:
        self.timer.stop()
        self.feed = None


class ChangeHub(QObject):
    """The window's one change signal: subjects named by views (``notify``) and topics the
    store watch reports are gathered and emitted once per event-loop turn, so a burst (a job
    and its undo, a poll that saw three topics) refreshes every view once."""

    def __init__(self, window, signal):
        super().__init__(window)
        self.window, self.signal = window, signal
        self.pending: set[str] = set()
        self.timer = QTimer(self, singleShot=True, interval=0)
        self.timer.timeout.connect(self._emit)
        self.watch = StoreWatch(self)
        self.watch.changed.connect(self.notify)

    def notify(self, subjects) -> None:
        self.pending |= set(subjects)
        self.timer.start()

    def _emit(self) -> None:
        subjects, self.pending = frozenset(self.pending), set()
        if subjects and self.window.project is not None:
            self.signal.emit(subjects)

"""The store's change feed: which subjects changed since a reader last looked.

Triggers (schema migration 8) bump one counter per topic in ``change_topics`` on every
insert, update and delete of the topic's tables, whatever wrote them: this process, a job
subprocess or the CLI in another terminal.  A reader keeps the counters it last saw and asks
``poll()`` which topics moved.  ``PRAGMA data_version`` answers first, in microseconds and
without reading a table, whether *another* connection committed anything at all, so a
poller that finds nothing new costs next to nothing; the counters are read only then.

Topics: ``images`` (images, clinical), ``labels``, ``masks``, ``boxes``, ``clusters``
(clusters and the cluster edit journal) and ``runs`` (cluster and model runs) — the
subjects the GUI's ``data_changed`` signal names.  Qt-free: the GUI's poller
(gui/widgets/store_watch.py) turns the answer into its signal.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mskstudio.store.project import Project

TOPICS = ("images", "labels", "masks", "boxes", "clusters", "runs")


class ChangeFeed:
    """One reader's view of the feed.  Use it from one thread (the GUI's): ``data_version``
    is per connection, and the connection of the calling thread is the one compared."""

    def __init__(self, project: Project):
        self.p = project
        self._lock = threading.Lock()
        self._version: int | None = None
        self._seen: dict[str, int] = self.counters()

    def available(self) -> bool:
        """False for a project too old to carry the feed (opened read-only, not migrated)."""
        return self.p.db.one("SELECT 1 FROM sqlite_master WHERE type = 'table' "
                             "AND name = 'change_topics'") is not None

    def counters(self) -> dict[str, int]:
        try:
            return {r[0]: int(r[1]) for r in self.p.db.query("SELECT topic, counter FROM change_topics")}
        except sqlite3.OperationalError:  # no feed in this (old, read-only) project
            return {}

    def data_version(self) -> int:
        return int(self.p.db.scalar("PRAGMA data_version"))

    def poll(self) -> set[str]:
        """Topics whose counters moved since the last poll (or since this feed was made).

        Changes this thread's own connection wrote do not move ``data_version``; they are
        caught at the next poll after another connection's commit, which only repeats a
        refresh the writer's view did already."""
        with self._lock:
            version = self.data_version()
            if version == self._version:
                return set()
            self._version = version
            now = self.counters()
            moved = {t for t, n in now.items() if self._seen.get(t) != n}
            self._seen = now
            return moved

    def mark_seen(self) -> None:
        """Take the current counters as seen (after this process refreshed its own views)."""
        with self._lock:
            self._seen = self.counters()

"""SQLite connection settings and write transactions.

Every thread and process opens its own connection through ``connect``; the settings
here are what make a project survive crashes and concurrent readers:

* WAL journal: readers never block the single writer, and a kill -9 mid-write leaves
  the last committed state intact.
* ``BEGIN IMMEDIATE`` for writes: the write lock is taken up front, so two writers
  queue on ``busy_timeout`` instead of failing half-way with SQLITE_BUSY.
* foreign keys on: a row can never point at a patient, image or run that is gone.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import quote

APPLICATION_ID = 0x4D534B31  # "MSK1": identifies our files among other SQLite databases
BUSY_TIMEOUT_MS = 30_000


# Database files this process has a Database open on.  Closing *any* file descriptor of
# a file drops every POSIX lock the process holds on it, SQLite's included; a plain
# open()/close() of a database another thread has open let a job subprocess checkpoint
# and delete the WAL under the GUI's connection, whose cached index pages then no longer
# matched the table (https://sqlite.org/howtocorrupt.html, section 2.2).  Code that reads
# the file outside SQLite asks ``open_in_this_process`` first.
_open_paths: Counter[str] = Counter()
_open_paths_lock = threading.Lock()


def _path_key(path: Path) -> str:
    return str(Path(path).resolve())


def open_in_this_process(path: Path) -> bool:
    with _open_paths_lock:
        return _open_paths[_path_key(path)] > 0


class StoreError(Exception):
    """A project that cannot be opened or written, with a message meant for the user."""


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the project database with the house settings.

    ``isolation_level=None`` hands transaction control to ``transaction()`` so no
    implicit BEGIN from the sqlite3 module ever surprises us.
    """
    if readonly:
        conn = _connect_readonly(path)
    else:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    if not readonly:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"{path}: could not switch the database to WAL mode (got {mode})")
        # NORMAL is durable in WAL mode except for the last transactions on power loss,
        # never corrupting; FULL would fsync every edit and make brush strokes slow.
        conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def _connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection, also on read-only media.

    A WAL database needs its ``-shm`` index file even to be read; on a read-only disk or
    folder where the project was closed cleanly (no ``-shm`` left) SQLite cannot create it
    and refuses to open.  Nobody can write such a medium, so the file is then opened as
    immutable (no locks, no shared memory), which is exactly true there."""
    uri = f"file:{quote(str(path))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        conn.close()
    return sqlite3.connect(f"{uri}&immutable=1", uri=True, isolation_level=None, check_same_thread=False)


class Database:
    """One connection per thread to the same file, and the write-transaction helper.

    sqlite3 connections must not be shared between threads while in use; the GUI
    runs jobs on worker threads, so each thread lazily gets its own connection.
    """

    def __init__(self, path: Path, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._key: str | None = _path_key(self.path)
        with _open_paths_lock:
            _open_paths[self._key] += 1

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, readonly=self.readonly)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def execute(self, sql: str, params: tuple | dict = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def one(self, sql: str, params: tuple | dict = ()) -> sqlite3.Row | None:
        return self.conn.execute(sql, params).fetchone()

    def scalar(self, sql: str, params: tuple | dict = ()):
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: BEGIN IMMEDIATE … COMMIT, ROLLBACK on any exception.

        Nested use joins the outer transaction (savepoints would be overkill here:
        callers that need atomicity across steps open the outer one).
        """
        if self.readonly:
            raise StoreError(f"{self.path}: the project is open read-only")
        conn = self.conn
        depth = getattr(self._local, "depth", 0)
        if depth:
            self._local.depth = depth + 1
            try:
                yield conn
            finally:
                self._local.depth = depth
            return
        conn.execute("BEGIN IMMEDIATE")
        self._local.depth = 1
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")
        finally:
            self._local.depth = 0

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                with suppress(sqlite3.ProgrammingError):  # closed already from its own thread
                    conn.close()
            self._all.clear()
        self._local = threading.local()
        with _open_paths_lock:
            if self._key is not None:  # closing twice counts once
                _open_paths[self._key] -= 1
                self._key = None

"""Failures of the medium a project lives on: a full disk, a read-only disk, a file size limit.

Such a failure is not the job's fault nor the input's: the job stops (going on would fail
at the next write too) and the user reads one line naming what failed and why, instead of
a traceback.  ``storage_failure`` recognises it, whether it surfaced as an ``OSError`` from
a blob, checkpoint or export write, or as SQLite's own "database or disk is full".
"""

from __future__ import annotations

import errno
import sqlite3

# errno values that mean "the medium refuses more bytes", whichever file was written.
STORAGE_ERRNOS = {
    errno.ENOSPC: "the disk is full (no space left on the device)",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EFBIG: "a file reached the size limit of the disk or of this process",
    errno.EROFS: "the disk is read-only",
}

# SQLite's messages for the same conditions (sqlite3 keeps only the text, not the errno).
_SQLITE_TEXTS = (
    ("database or disk is full", "the disk is full (the project database could not grow)"),
    ("readonly database", "the project database is read-only (read-only disk or folder)"),
    ("disk i/o error", "a disk I/O error (disk full, removed or failing)"),
)


class StorageWriteError(OSError):
    """Writing into the project failed (full, read-only or size-limited disk); the message
    says what and where.  Raised where the original error lost its errno (numpy reports a
    short write as "N requested and M written") or came back from a worker process."""


def storage_failure(exc: BaseException | None, *, output: str | None = None) -> str | None:
    """What went wrong with the medium, in words, if ``exc`` (or an exception it was raised
    from) is a storage failure; else None.  ``output``: the file or folder the work was
    writing, named when the error itself names no file (a plain ``write`` does not)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, StorageWriteError):
            return str(exc)
        if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
            target = exc.filename or output
            where = f" writing {target}" if target else ""
            return f"{STORAGE_ERRNOS[exc.errno]}{where}"
        if isinstance(exc, sqlite3.DatabaseError):
            text = str(exc).lower()
            for needle, meaning in _SQLITE_TEXTS:
                if needle in text:
                    return meaning
        exc = exc.__cause__ or exc.__context__
    return None


def describe_write_failure(exc: OSError, where: str) -> str:
    """One line for an OSError met while writing ``where`` inside the project."""
    return storage_failure(exc) or f"could not write {exc.filename or where} ({exc.strerror or exc})"

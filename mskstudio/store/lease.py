"""Who has a project open in a window: a small lease file, ``NAME.mskproj/session.json``.

SQLite keeps two processes from corrupting the database (WAL, ``BEGIN IMMEDIATE``,
``busy_timeout``), so a CLI job beside the GUI is safe and needs no lease.  Two *windows*
on one project are another matter for the people using them: each shows its own undo
history and board state, and an edit made in one is not seen in the other until it
reloads.  The second window therefore asks first ("open read-only, or continue anyway").

The file names the holder: pid, host, user, when it was opened and last renewed.  A
lease is stale, and silently taken over, when its process is gone (same host: the pid is
dead, or was reused by a process that started after the lease) or, for a holder on
another host (a network share), when it was not renewed for ``STALE_AFTER_S``.  The
window renews it every ``RENEW_EVERY_S``.  Written with ``os.replace`` so a reader never
sees half a file; nothing in it is needed for correctness, so a crash between two writes
costs at most one unnecessary question.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from mskstudio.store.repo_jobs import process_alive

LEASE_NAME = "session.json"
RENEW_EVERY_S = 60
STALE_AFTER_S = 10 * 60


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    user: str
    opened_at: str  # ISO UTC
    renewed_at: str  # ISO UTC

    def describe(self) -> str:
        opened = self.opened_at[:16].replace("T", " ")
        return f"{self.user} on {self.host} (process {self.pid}, since {opened} UTC)"

    def is_me(self) -> bool:
        return self.pid == os.getpid() and self.host == socket.gethostname()

    def is_stale(self, now: datetime | None = None) -> bool:
        if self.host == socket.gethostname():
            return not process_alive(self.pid, self.opened_at)
        try:
            renewed = datetime.fromisoformat(self.renewed_at.replace("Z", "+00:00"))
        except ValueError:
            return True
        return ((now or datetime.now(UTC)) - renewed).total_seconds() > STALE_AFTER_S


def read_holder(root: Path) -> Holder | None:
    """The lease's holder as written, stale or not; None without a readable lease."""
    try:
        data = json.loads((Path(root) / LEASE_NAME).read_text(encoding="utf-8"))
        return Holder(int(data["pid"]), str(data["host"]), str(data["user"]),
                      str(data["opened_at"]), str(data.get("renewed_at") or data["opened_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def open_elsewhere(root: Path) -> Holder | None:
    """The live holder of another process that has the project open in a window, or None."""
    holder = read_holder(root)
    if holder is None or holder.is_me() or holder.is_stale():
        return None
    return holder


class Lease:
    """This process's lease on a project (taken over from a stale or another holder)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.holder = Holder(os.getpid(), socket.gethostname(), _user(), _now(), _now())
        self._write()

    @classmethod
    def take(cls, root: Path) -> Lease | None:
        """Write the lease; None where the folder is not writable (a read-only project)."""
        try:
            return cls(root)
        except OSError:
            return None

    def renew(self) -> None:
        current = read_holder(self.root)
        if current is not None and not current.is_me():
            return  # another window continued anyway and holds it now; leave theirs
        self.holder = Holder(**{**asdict(self.holder), "renewed_at": _now()})
        with contextlib.suppress(OSError):
            self._write()

    def release(self) -> None:
        """Remove the lease if it is still ours (another window may have taken it over)."""
        current = read_holder(self.root)
        if current is not None and current.is_me():
            with contextlib.suppress(OSError):
                (self.root / LEASE_NAME).unlink()

    def _write(self) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".session-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(asdict(self.holder), f)
            os.replace(tmp, self.root / LEASE_NAME)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

"""Two processes, one project: concurrent writers both succeed (busy timeout, BEGIN
IMMEDIATE), and the window lease says who else has the project open, stale after a crash."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mskstudio.store import Project
from mskstudio.store.lease import LEASE_NAME, STALE_AFTER_S, Holder, Lease, open_elsewhere, read_holder

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}

WRITER = """
import sys, time
from mskstudio.store import Project
root, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with Project.open(root) as p:
    for i in range(n):
        with p.db.transaction() as c:  # each a write transaction of its own, interleaving with the other
            c.execute("INSERT INTO meta(key, value) VALUES (?, ?)", (f"{tag}-{i}", tag))
print("ok")
"""

HOLDER = """
import sys, time
from mskstudio.store import Project
with Project.open(sys.argv[1]) as p:
    with p.db.transaction() as c:
        c.execute("INSERT INTO meta(key, value) VALUES ('first', 'a')")
        print("holding", flush=True)
        time.sleep(float(sys.argv[2]))  # the write lock is held all this time
print("ok")
"""


def _python(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=REPO, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _integrity(root: Path) -> None:
    with Project.open(root) as project:
        assert project.db.scalar("PRAGMA integrity_check") == "ok"
        assert project.db.query("PRAGMA foreign_key_check") == []


def test_two_processes_writing_at_once_both_succeed(tmp_path):
    root = tmp_path / "p.mskproj"
    Project.create(root).close()
    procs = [_python(WRITER, str(root), tag, "150") for tag in ("a", "b")]
    outs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0 and out.strip() == "ok", err[-2000:]
    with Project.open(root) as project:
        counts = dict(project.db.query("SELECT value, COUNT(*) FROM meta WHERE value IN ('a', 'b') GROUP BY value"))
    assert counts == {"a": 150, "b": 150}
    _integrity(root)


def test_a_writer_waits_for_the_other_s_transaction_instead_of_failing(tmp_path):
    """Process A holds the write lock for a while; B's write waits (busy timeout) and lands after A's."""
    root = tmp_path / "p.mskproj"
    Project.create(root).close()
    holder = _python(HOLDER, str(root), "1.5")
    assert holder.stdout.readline().strip() == "holding"
    writer = _python(WRITER, str(root), "b", "1")
    out_b, err_b = writer.communicate(timeout=120)
    out_a, err_a = holder.communicate(timeout=120)
    assert holder.returncode == 0, err_a[-2000:]
    assert writer.returncode == 0 and out_b.strip() == "ok", err_b[-2000:]
    with Project.open(root) as project:
        order = [r[0] for r in project.db.query(
            "SELECT key FROM meta WHERE key IN ('first', 'b-0') ORDER BY rowid")]
    assert order == ["first", "b-0"]  # B committed only after A released the lock
    _integrity(root)


def _write_lease(root: Path, **fields) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    data = {"pid": os.getpid(), "host": socket.gethostname(), "user": "someone", "opened_at": now,
            "renewed_at": now, **fields}
    (root / LEASE_NAME).write_text(json.dumps(data))


def test_a_live_window_elsewhere_is_reported_and_a_crashed_one_is_stale(tmp_path):
    root = tmp_path / "p.mskproj"
    Project.create(root).close()
    assert open_elsewhere(root) is None  # no lease
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.05)
        _write_lease(root, pid=other.pid)
        holder = open_elsewhere(root)
        assert holder is not None and holder.pid == other.pid
        assert "someone on" in holder.describe()
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()
    assert open_elsewhere(root) is None  # the holder crashed: stale


def test_a_reused_pid_does_not_hold_the_lease(tmp_path):
    """A lease taken before the process with that pid started is not that process's."""
    root = tmp_path / "p.mskproj"
    Project.create(root).close()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        long_ago = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        _write_lease(root, pid=other.pid, opened_at=long_ago)
        assert open_elsewhere(root) is None
    finally:
        other.kill()
        other.wait()


def test_a_holder_on_another_host_is_stale_when_not_renewed(tmp_path):
    root = tmp_path / "p.mskproj"
    Project.create(root).close()
    recent = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    _write_lease(root, host="another-host.invalid", pid=1, renewed_at=recent)
    assert open_elsewhere(root) is not None
    old = (datetime.now(UTC) - timedelta(seconds=STALE_AFTER_S + 60)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    _write_lease(root, host="another-host.invalid", pid=1, renewed_at=old)
    assert open_elsewhere(root) is None


def test_own_lease_is_not_elsewhere_and_release_keeps_a_lease_taken_over(tmp_path):
    root = tmp_path / "p.mskproj"
    Project.create(root).close()
    lease = Lease(root)
    assert read_holder(root) == lease.holder and open_elsewhere(root) is None
    lease.renew()
    assert read_holder(root).pid == os.getpid()
    lease.release()
    assert not (root / LEASE_NAME).exists()
    lease = Lease(root)
    _write_lease(root, pid=1, host="another-host.invalid")  # another window continued anyway
    lease.renew()
    lease.release()
    assert read_holder(root) == Holder(1, "another-host.invalid", "someone", read_holder(root).opened_at,
                                       read_holder(root).renewed_at)


def test_a_lease_cannot_be_taken_on_a_read_only_folder(tmp_path, monkeypatch):
    root = tmp_path / "p.mskproj"
    Project.create(root).close()

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied", str(root))

    monkeypatch.setattr("tempfile.mkstemp", refuse)
    assert Lease.take(root) is None


def test_cli_info_names_the_window_that_has_the_project_open(tmp_path, capsys):
    from mskstudio.cli import main

    root = tmp_path / "p.mskproj"
    Project.create(root).close()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(0.05)
        _write_lease(root, pid=other.pid)
        assert main(["info", str(root)]) == 0
        assert f"open in a window: someone on {socket.gethostname()} (process {other.pid}" in capsys.readouterr().out
    finally:
        other.kill()
        other.wait()
    assert main(["info", str(root)]) == 0
    assert "open in a window" not in capsys.readouterr().out

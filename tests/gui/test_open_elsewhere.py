"""A second window on a project another window has open (issue 23, item 6): it says so,
with who and since when, and opens read-only, continues, or cancels."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from mskstudio.store.lease import LEASE_NAME, read_holder

pytestmark = pytest.mark.gui


@pytest.fixture
def held_elsewhere(project_copy, tmp_path):
    """A copy of the project whose lease names another live process on this host."""
    other = tmp_path / "other.mskproj"
    shutil.copytree(project_copy, other, ignore=shutil.ignore_patterns("*.db-wal", "*.db-shm"))
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    time.sleep(0.05)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    (other / LEASE_NAME).write_text(json.dumps({"pid": proc.pid, "host": socket.gethostname(), "user": "colleague",
                                                "opened_at": now, "renewed_at": now}))
    yield other, proc.pid
    proc.kill()
    proc.wait()


def test_the_window_holds_a_lease_on_its_project_and_gives_it_back(window, project_copy, tmp_path):
    holder = read_holder(project_copy)
    assert holder is not None and holder.is_me()
    other = tmp_path / "second.mskproj"
    shutil.copytree(project_copy, other, ignore=shutil.ignore_patterns("*.db-wal", "*.db-shm", LEASE_NAME))
    assert window.open_project(other)
    assert not (project_copy / LEASE_NAME).exists()  # released when the window left it
    assert read_holder(other).is_me()


def test_open_elsewhere_read_only(window, held_elsewhere):
    path, pid = held_elsewhere
    asked = []
    window.ask_open_elsewhere = lambda root, holder: asked.append(holder) or "read-only"
    assert window.open_project(path)
    assert asked and asked[0].pid == pid and asked[0].user == "colleague"
    assert window.project.readonly and window.project.root == path
    assert "another window" in window.windowTitle() and "colleague" in window.windowTitle()
    assert read_holder(path).pid == pid  # a read-only window takes no lease


def test_open_elsewhere_continue_takes_the_lease(window, held_elsewhere):
    path, _ = held_elsewhere
    window.ask_open_elsewhere = lambda root, holder: "continue"
    assert window.open_project(path)
    assert not window.project.readonly
    assert read_holder(path).is_me()


def test_open_elsewhere_cancel_keeps_the_open_project(window, held_elsewhere, project_copy):
    path, pid = held_elsewhere
    window.ask_open_elsewhere = lambda root, holder: None
    assert not window.open_project(path)
    assert window.project.root == project_copy
    assert read_holder(path).pid == pid

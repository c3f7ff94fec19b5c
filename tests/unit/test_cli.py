"""The CLI as a user runs it: subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mskstudio", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def test_new_info_jobs(tmp_path):
    r = cli("new", tmp_path / "study")
    assert r.returncode == 0, r.stderr
    root = tmp_path / "study.mskproj"
    assert (root / "project.db").exists()
    r = cli("info", root, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["images"] == 0 and info["schema"] >= 1
    r = cli("jobs", root)
    assert r.returncode == 0 and "status" in r.stdout


@pytest.mark.parametrize("args, words", [
    (("info", "/definitely/not/here"), "no such project"),
    (("info", "."), "not an mskstudio project"),
    (("run-job", "PROJECT", "99"), "no job 99"),
    (("import", "PROJECT", "/no/such/folder"), "/no/such/folder: no such file or folder"),
])
def test_user_errors_are_one_line(tmp_path, args, words):
    project = tmp_path / "p.mskproj"
    assert cli("new", project).returncode == 0
    args = [project if a == "PROJECT" else a for a in args]
    r = cli(*args, cwd=tmp_path)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    assert words in r.stderr + r.stdout


def test_debug_shows_traceback(tmp_path):
    r = cli("--debug", "info", tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_corrupt_database_message(tmp_path):
    project = tmp_path / "p.mskproj"
    assert cli("new", project).returncode == 0
    (project / "project.db").write_bytes(b"garbage" * 50)
    r = cli("info", project)
    assert r.returncode == 1
    assert "project.db" in r.stderr and "not an SQLite database" in r.stderr


def test_version():
    r = cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("mskstudio ")

"""The application entry: screenshot mode (used by the installer smoke test) and crash logs."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
from PIL import Image


def test_screenshot_mode_opens_project_and_quits(project_copy, tmp_path):
    out = tmp_path / "shot.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "MSKSTUDIO_SETTINGS_DIR": str(tmp_path / "s")}
    r = subprocess.run([sys.executable, "-m", "mskstudio.gui", "--screenshot", str(out), "--quit-after-ms", "200",
                        str(project_copy)], capture_output=True, text=True, timeout=180, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    with Image.open(out) as img:
        assert img.width >= 800 and img.height >= 500
        # Not a blank grab: a radiograph and the docks put many grey levels on screen.
        assert len(np.unique(np.asarray(img.convert("L")))) > 50
    assert (tmp_path / "s" / "logs" / "mskstudio.log").exists()


def test_crash_log_has_the_traceback(tmp_path, monkeypatch):
    from mskstudio.gui import app

    monkeypatch.setenv("MSKSTUDIO_SETTINGS_DIR", str(tmp_path))
    try:
        raise RuntimeError("a slot blew up")
    except RuntimeError:
        path = app.write_crash_log(*sys.exc_info())
    text = path.read_text()
    assert path.parent == tmp_path / "logs"
    assert "RuntimeError: a slot blew up" in text and "test_crash_log_has_the_traceback" in text


def test_an_edit_on_a_full_disk_says_it_was_not_saved_without_a_crash_log(tmp_path, monkeypatch, qapp):
    import sqlite3

    from PySide6.QtWidgets import QMessageBox

    from mskstudio.gui import app

    monkeypatch.setenv("MSKSTUDIO_SETTINGS_DIR", str(tmp_path))
    shown = []
    monkeypatch.setattr(QMessageBox, "critical", staticmethod(lambda _p, title, text: shown.append((title, text))))
    previous = sys.excepthook
    app.install_crash_handler()
    try:
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError:
            sys.excepthook(*sys.exc_info())
    finally:
        sys.excepthook = previous
    assert shown == [("mskstudio: could not save", shown[0][1])]
    assert "was not saved" in shown[0][1] and "the disk is full" in shown[0][1]
    assert not list((tmp_path / "logs").glob("crash-*.log"))  # not a bug: no crash log

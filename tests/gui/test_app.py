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

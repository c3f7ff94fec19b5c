"""GUI fixtures: the real main window on a private copy of the phantom project.

Settings go to a temporary folder (MSKSTUDIO_SETTINGS_DIR), test job kinds are
registered in-process (thread lane) and through ``jobhost.py`` (subprocess lane).
"""

from __future__ import annotations

import contextlib
import gc
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _gui_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("MSKSTUDIO_SETTINGS_DIR", str(tmp_path / "settings"))


@pytest.fixture(autouse=True)
def _test_job_kinds(monkeypatch):
    import gui_testjobs

    from mskstudio import jobrun

    for kind, target in gui_testjobs.KINDS.items():
        monkeypatch.setitem(jobrun.JOB_KINDS, kind, target)


@pytest.fixture(autouse=True)
def _collect_garbage_between_tests(qapp):
    """Collect each GUI test's garbage at its end, while no decoder or job thread runs.

    Twice, on a fresh clone's first run, the interpreter crashed (SIGSEGV) in the
    collector when it happened to run during a later test's window set-up while that
    window's image decoder was busy on its worker thread; the garbage was the Qt objects
    of earlier tests' windows. The root cause is not pinned down (see the issue note);
    collecting here puts the collection at a quiet point."""
    yield
    qapp.processEvents()
    gc.collect()


@pytest.fixture(scope="session")
def qapp_cls():
    from PySide6.QtWidgets import QApplication

    return QApplication


@pytest.fixture
def project_copy(phantom_project_path, tmp_path) -> Path:
    copy = tmp_path / "gui.mskproj"
    shutil.copytree(phantom_project_path, copy)
    return copy


@pytest.fixture
def window(qtbot, qapp, project_copy):
    from mskstudio.gui.app import make_app
    from mskstudio.gui.main_window import MainWindow

    make_app()
    w = MainWindow(project_copy, load_workspaces=False)
    w.runner.subprocess_prefix = [sys.executable, str(HERE / "jobhost.py")]
    w.runner.kill_after_s = 3.0
    w.confirm = lambda *a: True
    qtbot.addWidget(w)
    w.resize(1400, 900)
    w.show()
    qtbot.waitUntil(lambda: w.viewer.rad is not None, timeout=15000)
    yield w
    w.runner.shutdown(5)
    w.viewer.loader.wait(5000)
    for d in list(w.dialogs):
        with contextlib.suppress(RuntimeError):  # deleted on close already
            d.close()

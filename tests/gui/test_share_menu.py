"""File › Share a copy… runs the share job with progress and says what it wrote (issue 23)."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QFileDialog, QPlainTextEdit

from mskstudio.gui.exports.menu import add_exchange_menu
from mskstudio.gui.exports.share import default_copy_path
from mskstudio.store import Project

pytestmark = pytest.mark.gui


def test_share_a_copy_runs_the_job_and_reports(window, qtbot, monkeypatch, tmp_path):
    add_exchange_menu(window)
    file_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&File")
    assert "S&hare a copy (re-keyed)…" in [a.text() for a in file_menu.actions()]
    out = tmp_path / "for-partners"  # the suffix is added
    offered = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda _w, _t, start, _f: offered.append(start) or (str(out), "")))
    progress = []
    window.runner.job_progress.connect(lambda job_id, fraction, message, eta: progress.append(fraction))
    before = len(window.dialogs)
    window.actions_by_name["share_copy"].trigger()
    assert offered == [str(default_copy_path(window.project.root))]
    qtbot.waitUntil(lambda: len(window.dialogs) > before, timeout=120000)
    assert not window.errors, window.errors
    text = window.dialogs[-1].findChild(QPlainTextEdit).toPlainText()
    copy = tmp_path / "for-partners.mskproj"
    assert text.startswith(f"Wrote {copy}") and "not kept" in text
    assert progress and max(progress) > 0
    job = window.project.jobs.list()[0]
    assert job["kind"] == "share" and job["status"] == "done"
    with Project.open(copy) as shared:
        assert shared.db.scalar("SELECT COUNT(*) FROM images") == window.project.db.scalar(
            "SELECT COUNT(*) FROM images")
        assert shared.meta("key_fingerprint") != window.project.meta("key_fingerprint")
        assert shared.key_problem()  # no key for it on this machine: it cannot be extended


def test_share_refuses_an_existing_folder(window, monkeypatch, tmp_path):
    from mskstudio.gui.exports.share import ask_share

    (tmp_path / "there.mskproj").mkdir()
    submitted = []
    monkeypatch.setattr(window.runner, "submit", lambda *a: submitted.append(a) or 1)
    assert ask_share(window, str(tmp_path / "there")) is None
    assert not submitted and "already exists" in window.errors[-1][1]

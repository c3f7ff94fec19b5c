"""The job runner from the GUI: import with summary, cancel (thread and subprocess), errors, crash resume."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.gui


def test_import_job_with_progress_and_summary(qtbot, window, phantom_archive, tmp_path):
    w = window
    src = tmp_path / "incoming"
    src.mkdir()
    dicoms = sorted((phantom_archive.parent / "dicom").rglob("*.dcm"))[:3]
    for i, f in enumerate(dicoms):
        shutil.copy(f, src / f"{i}.dcm")
    (src / "broken.dcm").write_bytes(b"DICM" * 10)
    progress = []
    w.runner.job_progress.connect(lambda j, f, m, e: progress.append(f))
    with qtbot.waitSignal(w.runner.job_finished, timeout=60000):
        job_id = w.import_dicom(str(src))
    h = w.runner.handle(job_id)
    assert h.state == "done", h.error
    assert isinstance(h.result, dict)
    assert w.jobs_view.status_of(job_id) == "done"
    assert progress and progress[-1] <= 1.0
    summary = w.dialogs[-1]
    assert "Import DICOM" in summary.windowTitle()
    failures = w.project.db.query("SELECT path, reason FROM import_failures WHERE job_id=?", (job_id,))
    assert any("broken" in f["path"] for f in failures)

    # A readable view (not the result as JSON): the CLI's own summary sentence, file and reason
    # per row, a filter, CSV export of what the filter shows.
    from mskstudio.gui.dialogs.import_failures import ImportFailuresDialog
    from mskstudio.io.importer import summary_line

    assert isinstance(summary, ImportFailuresDialog)
    assert summary.summary.text() == summary_line(h.result) and "{" not in summary.summary.text()
    # The phantom files are in the project already: present, not imported, not "skipped".
    assert summary.summary.text() == "imported 0 files, 3 already in the project, 1 not DICOM, 0 failed (1 skipped)"
    assert [(r[0], r[1]) for r in summary.shown_rows()] == [(f["path"], f["reason"]) for f in failures]
    summary.filter.setText("BROKEN")
    assert len(summary.shown_rows()) == 1
    summary.filter.setText("no such reason")
    assert summary.shown_rows() == [] and "0 of 1 shown" in summary.count.text()
    summary.filter.setText("broken")
    out = tmp_path / "failures.csv"
    assert summary.export_csv(out) == 1
    lines = out.read_text().splitlines()
    assert lines[0] == "file,reason,job" and "broken.dcm" in lines[1]

    with qtbot.waitSignal(w.runner.job_finished, timeout=60000):
        again = w.import_dicom(str(src))  # again: the same counts, the failures of both jobs listed
    assert w.dialogs[-1].summary.text() == summary.summary.text()
    every = w.show_import_failures()
    assert {r[2] for r in every.shown_rows()} == {str(job_id), str(again)}


def test_cancel_thread_job(qtbot, window):
    w = window
    job_id = w.runner.submit("gui-test-sleep", {"steps": 200, "step_s": 0.02})
    qtbot.waitUntil(lambda: w.runner.handle(job_id).fraction > 0, timeout=10000)
    assert w.jobs_view.status_of(job_id) == "running"
    with qtbot.waitSignal(w.runner.job_cancelled, timeout=10000):
        w.runner.cancel(job_id)
    qtbot.waitUntil(lambda: w.project.jobs.get(job_id)["status"] == "cancelled", timeout=5000)
    assert w.jobs_view.status_of(job_id) == "cancelled"


def test_cancel_subprocess_job_and_queue(qtbot, window):
    w = window
    first = w.runner.submit("gui-test-sleep", {"steps": 400, "step_s": 0.02}, lane="heavy")
    second = w.runner.submit("gui-test-sleep", {"steps": 2, "step_s": 0.01}, lane="heavy")
    assert w.runner.handle(second).state == "queued"  # one heavy job at a time
    qtbot.waitUntil(lambda: w.runner.handle(first).fraction > 0, timeout=20000)
    assert w.runner.handle(first).process is not None
    with qtbot.waitSignal(w.runner.job_cancelled, timeout=15000):
        w.runner.cancel(first)
    assert w.project.jobs.get(first)["status"] == "cancelled"
    qtbot.waitUntil(lambda: w.runner.handle(second).state == "done", timeout=20000)
    assert w.runner.handle(second).result == {"steps": 2}


def test_errors_are_shown_with_details(qtbot, window):
    w = window
    with qtbot.waitSignal(w.runner.job_errored, timeout=10000) as sig:
        job_id = w.runner.submit("gui-test-fail", {})
    assert sig.args[0] == job_id and "exploded" in sig.args[1]
    assert "Traceback" in sig.args[2]
    title, message, details = w.errors[-1]
    assert "failed" in title and "exploded" in message and "RuntimeError" in details
    assert w.project.jobs.get(job_id)["status"] == "error"
    # the subprocess lane reports errors the same way
    with qtbot.waitSignal(w.runner.job_errored, timeout=20000) as sig:
        w.runner.submit("gui-test-fail", {}, lane="heavy")
    assert "exploded" in sig.args[1]


def test_interrupted_jobs_offered_for_resume(qtbot, qapp, project_copy):
    from mskstudio.gui.main_window import MainWindow
    from mskstudio.store import Project

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with Project.open(project_copy) as p:
        job_id = p.jobs.submit("gui-test-sleep", {"steps": 3, "step_s": 0.01})
        p.db.execute("UPDATE jobs SET status='running', pid=? WHERE id=?", (dead.pid, job_id))
    w = MainWindow(project_copy, load_workspaces=False)  # the app restarts after the "crash"
    qtbot.addWidget(w)
    w.show()
    assert w.project.jobs.get(job_id)["status"] == "interrupted"
    assert not w.jobs_view.banner.isHidden()
    assert w.jobs_view.interrupted_ids == [job_id]
    # a kind that cannot continue where it stopped says so: Resume starts it again
    assert f"#{job_id}: gui-test-sleep cannot continue where it stopped" in w.jobs_view.banner_text.text()
    with qtbot.waitSignal(w.runner.job_returned, timeout=15000):
        new_ids = w.jobs_view.resume_interrupted()
    assert w.project.jobs.params(new_ids[0])["resume_of"] == job_id
    assert w.jobs_view.banner.isHidden()
    w.jobs_view.offer_resume()
    assert w.jobs_view.banner.isHidden()  # resumed once: not offered again
    w.viewer.loader.wait(5000)


def test_selected_job_plots_its_epoch_curves_live(qtbot, window):
    """Training-like metrics from the subprocess lane plot under the log while the job runs."""
    from gui_testjobs import epoch_figures

    w, view = window, window.jobs_view
    quiet = w.runner.submit("gui-test-sleep", {"steps": 2, "step_s": 0.01})
    qtbot.waitUntil(lambda: w.runner.handle(quiet).state == "done", timeout=10000)
    job_id = w.runner.submit("gui-test-epochs", {"epochs": 6, "epoch_s": 0.5}, lane="heavy")
    view.table.selectRow(view.rows[job_id])

    def points():
        return [list(item.yData) for item in view.curves.plot.plotItem.listDataItems()]

    # Live: two epochs are drawn while the job still runs.
    qtbot.waitUntil(lambda: len(points()) == 2 and len(points()[0]) >= 2, timeout=30000)
    assert w.runner.handle(job_id).state == "running"
    assert view.curves.isVisibleTo(view) and view.curves.quantity.currentText() == "val_loss"
    qtbot.waitUntil(lambda: w.runner.handle(job_id).state == "done", timeout=30000)
    view._show_curves()
    expected = [[epoch_figures(e)[f"fold{f}/val_loss"] for e in range(6)] for f in (0, 1)]
    assert points() == expected
    view.curves.quantity.setCurrentText("val_acc")
    assert points() == [[epoch_figures(e)["fold0/val_acc"] for e in range(6)]]
    # A job that reported one figure still shows it; the selection follows the row.
    view.table.selectRow(view.rows[quiet])
    assert view.curves.quantity.currentText() == "loss" and points() == [[0.5]]


def test_a_killed_job_process_shows_as_interrupted_and_is_offered_for_resume(qtbot, window):
    """kill -9 of a job subprocess (out of memory, a user's kill): 'interrupted', not 'error'."""
    import os
    import signal

    w = window
    job_id = w.runner.submit("gui-test-sleep", {"steps": 400, "step_s": 0.02}, lane="heavy")
    qtbot.waitUntil(lambda: w.runner.handle(job_id).fraction > 0, timeout=20000)
    with qtbot.waitSignal(w.runner.job_errored, timeout=15000):
        os.kill(w.runner.handle(job_id).process.processId(), signal.SIGKILL)
    assert w.project.jobs.get(job_id)["status"] == "interrupted"
    assert w.jobs_view.status_of(job_id) == "interrupted"
    assert job_id in w.jobs_view.interrupted_ids and not w.jobs_view.banner.isHidden()

"""The whole loop in the real main window with real jobs (issue 23, item 7).

Import a folder of phantom DICOM files → "Cluster now" → label the clusters on the board
with real key presses → train a tiny classifier from the Train dialog → review a
prediction with its Grad-CAM heat map → export the annotations.  Nothing is stubbed:
every step goes through the window's one job runner, the heavy ones (clustering,
training) in a ``mskstudio run-job`` subprocess as in the application, and each step
reads what the one before it stored.  Sizes are tiny (60 images, 64 px, one epoch) so
the test takes about a minute on a 2-core machine.
"""

from __future__ import annotations

import contextlib
import csv
import resource
import sys
import time
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QFileDialog

pytestmark = pytest.mark.gui
REPO = Path(__file__).resolve().parents[2]
FINISHED = ("done", "error", "cancelled", "interrupted")


def _wait_job(qtbot, w, job_ids: list[int], kind: str, timeout_s: float) -> int:
    """The last submitted job of ``kind``, waited for until it finished; it must be done."""
    qtbot.waitUntil(lambda: any(w.project.jobs.get(j)["kind"] == kind for j in job_ids), timeout=5000)
    job = [j for j in job_ids if w.project.jobs.get(j)["kind"] == kind][-1]
    qtbot.waitUntil(lambda: w.project.jobs.get(job)["status"] in FINISHED and not w.runner.active_jobs(),
                    timeout=int(timeout_s * 1000))
    row = w.project.jobs.get(job)
    assert row["status"] == "done", f"{kind}: {row['status']}: {(row['error'] or '')[-2000:]}"
    return job


def _tab(w, title: str):
    i = next(i for i in range(w.workspace.count()) if w.workspace.tabText(i) == title)
    w.workspace.setCurrentIndex(i)
    return w.workspace.widget(i)


@pytest.fixture
def window(qtbot, qapp, tmp_path, monkeypatch):
    from mskstudio.gui.app import make_app
    from mskstudio.gui.main_window import MainWindow
    from mskstudio.store import Project

    # The job subprocesses import this checkout's mskstudio, as the test process does.
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    root = tmp_path / "loop.mskproj"
    Project.create(root).close()
    make_app()
    w = MainWindow(root)
    assert w.runner.subprocess_prefix == [sys.executable, "-m", "mskstudio"], "the application's runner"
    w.confirm = lambda *a: True
    qtbot.addWidget(w)
    w.resize(1500, 950)
    w.show()
    yield w
    w.runner.shutdown(10)
    w.viewer.loader.wait(5000)
    for d in list(w.dialogs):
        with contextlib.suppress(RuntimeError):
            d.close()


def test_import_cluster_label_train_review_export_with_real_jobs(window, qtbot, phantom_archive, tmp_path,
                                                                 monkeypatch):
    w = window
    p = w.project
    submitted: list[int] = []
    w.runner.job_submitted.connect(submitted.append)
    def cpu() -> float:  # this process and its finished job subprocesses
        return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                   for f in ("ru_utime", "ru_stime"))

    t0, c0, seconds = time.perf_counter(), cpu(), {}

    def step(name: str) -> None:  # wall and CPU seconds per step, printed (with -s) for the notes
        nonlocal t0, c0
        seconds[name] = (round(time.perf_counter() - t0, 1), round(cpu() - c0, 1))
        t0, c0 = time.perf_counter(), cpu()

    # 1. File › Import DICOM folder…
    folder = phantom_archive.parent / "dicom"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(folder)))
    w.actions_by_name["import_dicom"].trigger()
    _wait_job(qtbot, w, submitted, "import", 120)
    n_images = len(p.images.ids())
    assert n_images == sum(1 for f in folder.rglob("*") if f.is_file())
    step("import")

    # 2. Clusters › Cluster now (a subprocess job), into the label set "region"
    board = _tab(w, "Clusters")
    board.label_set.setCurrentText("region")
    board.cluster_now_btn.click()
    job = _wait_job(qtbot, w, submitted, "cluster", 180)
    assert job in w.runner.handles and w.runner.handles[job].lane == "heavy"
    run_id = w.project.jobs.record(job).result["cluster_run_id"]
    qtbot.waitUntil(lambda: board.run_id == run_id and board.clusters.count() >= 2, timeout=10000)
    step("cluster now")

    # 3. Label every cluster with the keyboard: two new classes typed, then 1 / 2 by turns.
    ids = [int(board.clusters.item(i).data(Qt.ItemDataRole.UserRole)) for i in range(board.clusters.count())]
    for cluster, name in zip(ids[:2], ("knee", "hand"), strict=True):
        board.select_clusters([cluster])
        board.new_class.setFocus()
        QTest.keyClicks(board.new_class, name)
        QTest.keyClick(board.new_class, Qt.Key.Key_Return)
    for k, cluster in enumerate(ids[2:]):
        board.select_clusters([cluster])
        board.clusters.setFocus()
        QTest.keyClick(board.clusters, Qt.Key.Key_1 if k % 2 == 0 else Qt.Key.Key_2)
    ls = p.labels.find_label_set("region")
    labels = p.labels.effective(ls)
    assert len(labels) == n_images and len(set(labels.values())) == 2
    assert f"{len(ids)}/{len(ids)} clusters reviewed" in board.progress.text()
    step("label clusters")

    # 4. Model › Train classifier… (a subprocess job) on the labels the board wrote
    w.actions_by_name["train"].trigger()
    dialog = w.dialogs[-1]
    dialog.label_set.setCurrentIndex(dialog.label_set.findData("region"))
    dialog.arch.setCurrentText("tinycnn")
    dialog.size.setValue(64)
    dialog.folds.setValue(2)
    dialog.epochs.setValue(1)
    dialog.batch_size.setValue(16)
    assert dialog.validate() == []
    dialog.train_btn.click()
    job = _wait_job(qtbot, w, submitted, "train", 240)
    model_run = w.project.jobs.record(job).result["model_run_id"]
    assert p.models.get(model_run)["status"] == "done"
    step("train")

    # 5. Review: the run's first case with its Grad-CAM heat map, accepted with A
    review = _tab(w, "Review")
    review.set_run(model_run)
    qtbot.waitUntil(lambda: review.case is not None, timeout=10000)
    case = review.case
    qtbot.waitUntil(lambda: "gradcam" in review.viewer.overlays, timeout=120000)
    _wait_job(qtbot, w, submitted, "explain", 60)
    assert review.heat is not None and 0.0 <= review.heat.min() <= review.heat.max() <= 1.0
    review.setFocus()
    QTest.keyClick(review, Qt.Key.Key_A)
    human = p.labels.effective(ls, sources=("human",))
    assert human.get(case.image_id) == case.pred
    step("review with heat map")

    # 6. Model › Export annotations… (labels, masks, COCO, SR) of what the loop made
    out = tmp_path / "export"
    out.mkdir()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(out)))
    w.actions_by_name["export_annotations"].trigger()
    job = _wait_job(qtbot, w, submitted, "export-annotations", 120)
    with open(out / "labels.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    reviewed = p.images.record(case.image_id).sop_uid
    assert any(r["source"] == "human" and reviewed in r.values() for r in rows), "the review's label"
    assert sum(r["source"] == "cluster" for r in rows) == n_images, "the board's labels"
    assert (out / "boxes_coco.json").is_file() and (out / "lesions.csv").is_file()
    assert not w.runner.active_jobs()
    assert not p.db.scalar("SELECT COUNT(*) FROM jobs WHERE status != 'done'")
    step("export")
    print("workflow step seconds (wall, CPU):", seconds)

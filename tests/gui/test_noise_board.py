"""Label-noise board (pytest-qt, offscreen) on a synthetic project with flipped cluster labels."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QUndoStack

from mskstudio.gui.noise import rows as nr

pytestmark = pytest.mark.gui
pytest.importorskip("faiss")

N_IMAGES, FLIP = 80, 0.1
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def noisy_root(tmp_path_factory):
    """A project: synthetic images (thumbnails + analysis arrays), cluster labels with 10 %
    flipped, a classifier run with predictions, and an unlabelled two-class set ``empty``."""
    from mskstudio.ml.synthetic import REGIONS, add_synthetic_images
    from mskstudio.store import Project

    root = tmp_path_factory.mktemp("noise") / "noise.mskproj"
    with Project.create(root) as p:
        truth = add_synthetic_images(p, N_IMAGES, seed=5, size=48)
        set_id = p.labels.label_set("region")
        cls = {r: p.labels.class_id(set_id, r) for r in REGIONS}
        rng = np.random.default_rng(0)
        ids = sorted(truth)
        flipped = set(rng.choice(ids, int(FLIP * len(ids)), replace=False).tolist())
        for i in ids:
            region = truth[i]
            if i in flipped:
                region = rng.choice([r for r in REGIONS if r != region])
            p.labels.set_labels([i], set_id, cls[region], source="cluster", audit=False)
        run = p.models.create("classifier", "resnet18", label_set_id=set_id)
        rows = []
        for i in ids:
            pred = truth[i] if rng.random() < 0.85 else rng.choice([r for r in REGIONS if r != truth[i]])
            probs = {cls[r]: (0.7 if r == pred else 0.1) for r in REGIONS}
            rows.append((run, i, cls[pred], 0.7, json.dumps(probs)))
        with p.db.transaction() as c:
            c.executemany("INSERT INTO predictions(model_run_id, image_id, class_id, confidence, probs) "
                          "VALUES (?, ?, ?, ?, ?)", rows)
        empty = p.labels.label_set("empty")
        p.labels.class_id(empty, "a")
        p.labels.class_id(empty, "b")
    return root, flipped, run


class StubWindow(QObject):
    """What the board uses of MainWindow, with the real job runner (subprocess lane).

    (Synthetic images have no DICOM file, so the real window's viewer cannot open them.)"""

    project_changed = Signal()

    def __init__(self, project):
        super().__init__()
        from mskstudio.gui.jobs.runner import JobRunner

        self.project = project
        self.undo_stack = QUndoStack(self)
        self.runner = JobRunner(project, parent=self)
        self.runner.subprocess_prefix = [sys.executable, str(HERE / "jobhost.py")]
        self.runner.kill_after_s = 3.0
        self.opened: list[int] = []

    def open_image(self, image_id):
        self.opened.append(image_id)

    def show_in_viewer(self):
        self.shown_in_viewer = getattr(self, "shown_in_viewer", 0) + 1

    def store_edited(self):
        pass

    def show_error(self, title, message, details=""):
        self.errors = [*getattr(self, "errors", []), (title, message)]

    def set_project(self, project):
        self.project = project
        self.undo_stack.clear()
        self.project_changed.emit()


@pytest.fixture
def board(qtbot, noisy_root, tmp_path):
    from mskstudio.gui.noise.board import NoiseBoard
    from mskstudio.store import Project

    copy = tmp_path / "w.mskproj"
    shutil.copytree(noisy_root[0], copy)
    project = Project.open(copy)
    w = StubWindow(project)
    b = NoiseBoard(w)
    qtbot.addWidget(b)
    b.resize(1300, 800)
    b.show()
    b.setFocus()
    yield b
    w.runner.shutdown(10)
    if w.project is not None:
        w.project.close()
    project.close()


def _compute(qtbot, board, label_set="region"):
    board.set_combo.setCurrentIndex(board.set_combo.findText(label_set))
    job = board.compute()
    assert job is not None and not board.compute_btn.isEnabled()
    qtbot.waitUntil(lambda: board.job_id is None, timeout=30000)


def test_rows_from_result_by_hand():
    rows = nr.rows_from_result({"n": 2, "items": [
        {"image_id": 3, "given": "hand", "knn": "long", "knn_agree": 0.2, "classifier": "long",
         "classifier_p_given": 0.1, "score": 0.85, "disagree": True},
        {"image_id": 1, "given": "long", "knn": None, "knn_agree": None, "classifier": None,
         "classifier_p_given": None, "score": 0.5, "disagree": True}]})
    assert [r.image_id for r in rows] == [3, 1]
    assert "80%" in rows[0].knn_text() and rows[1].knn_text() == "—"
    assert "hand" in rows[0].list_text() and not rows[0].reviewed
    assert nr.rows_from_result(None) == []
    classes = [nr.ClassInfo(1, "a"), nr.ClassInfo(2, "b")]
    assert nr.key_class(classes, 2).name == "b" and nr.key_class(classes, 3) is None


def test_flipped_images_top_the_queue_and_keys_fix_them(qtbot, board, noisy_root):
    _, flipped, run = noisy_root
    assert board.set_combo.currentText() == "region"       # the set with cluster labels first
    assert board.clf_combo.currentData() == run
    _compute(qtbot, board)
    rows = board.rows
    assert rows and board.row is rows[0]
    n = len(flipped)
    hits = sum(1 for r in rows[:n] if r.image_id in flipped)
    print(f"\nflipped {n}/{N_IMAGES}: {hits} in the board's top {n} of {len(rows)}")
    assert hits >= 0.5 * n
    assert [r.score for r in rows] == sorted((r.score for r in rows), reverse=True)
    assert rows[0].classifier_conf == pytest.approx(0.7) or rows[0].classifier is None
    assert board.list.item(0).icon() is not None and board.thumbs   # thumbnails loaded

    project, stack = board.project, board.window_.undo_stack
    set_id = project.labels.find_label_set("region")
    first, second = rows[0], rows[1]
    qtbot.keyClick(board, Qt.Key.Key_2)
    human = project.labels.effective(set_id, sources=("human",))
    assert human[first.image_id] == board.classes[1].id
    assert first.human == board.classes[1].name and board.index == 1
    assert any(r["action"] == "noise.review" and r["entity_id"] == first.image_id
               for r in project.audit_log())
    stack.undo()
    assert first.image_id not in project.labels.effective(set_id, sources=("human",))
    assert first.human is None
    stack.redo()
    assert project.labels.effective(set_id, sources=("human",))[first.image_id] == board.classes[1].id

    qtbot.keyClick(board, Qt.Key.Key_Return)              # keep the cluster label
    assert second.human == second.given and board.index == 2
    qtbot.keyClick(board, Qt.Key.Key_Left)
    assert board.index == 1
    board.step(-1)
    rect = board.list.visualItemRect(board.list.item(0))
    qtbot.mouseClick(board.list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(board.list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert board.window_.opened == [first.image_id]

    out = Path(os.environ.get("MSKSTUDIO_SHOTS", project.root.parent))
    out.mkdir(parents=True, exist_ok=True)
    assert board.grab().save(str(out / "noise_board.png"))

    _compute(qtbot, board)                                 # reviewed images leave the queue
    assert first.image_id not in [r.image_id for r in board.rows]


def test_empty_queue(qtbot, board):
    _compute(qtbot, board, "empty")
    assert board.rows == [] and board.row is None
    assert "empty" in board.status.text() and board.title.text() == "The queue is empty"
    qtbot.keyClick(board, Qt.Key.Key_1)                   # nothing to label: no crash, no command
    qtbot.keyClick(board, Qt.Key.Key_Right)
    qtbot.keyClick(board, Qt.Key.Key_Return)
    assert board.window_.undo_stack.count() == 0
    board.window_.set_project(None)                        # no project at all
    assert board.set_combo.count() == 0 and board.compute() is None

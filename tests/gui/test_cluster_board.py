"""Cluster board (pytest-qt, offscreen) with a minimal stub main window."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QUndoStack

from mskstudio.ml.cluster import features as F
from mskstudio.ml.synthetic import add_synthetic_images
from mskstudio.store import Project

pytestmark = pytest.mark.gui


class StubRunner(QObject):
    job_returned = Signal(int, object)

    def __init__(self):
        super().__init__()
        self.submitted = []

    def submit(self, kind, params=None):
        self.submitted.append((kind, params))
        return len(self.submitted)


class StubWindow(QObject):
    project_changed = Signal()

    def __init__(self, project):
        super().__init__()
        self.project = project
        self.undo_stack = QUndoStack(self)
        self.runner = StubRunner()
        self.opened = []

    def open_image(self, image_id):
        self.opened.append(image_id)

    def show_in_viewer(self):
        self.shown_in_viewer = getattr(self, "shown_in_viewer", 0) + 1

    def store_edited(self):
        pass

    def show_error(self, title, message, details=""):
        self.errors = [*getattr(self, "errors", []), (title, message)]


def _make_project(path):
    project = Project.create(path)
    truth = add_synthetic_images(project, 24, seed=5)
    ids = project.images.ids()
    regions = sorted(set(truth.values()))
    assign = np.array([regions.index(truth[i]) for i in ids])
    rng = np.random.default_rng(0)
    feats = F.l2_normalise(rng.normal(size=(len(ids), 8)).astype(np.float32) + 2 * assign[:, None])
    run_id = project.clusters.create_run(image_ids=ids, assign=assign, distance=rng.random(len(ids)),
                                         member_xy=rng.normal(size=(len(ids), 2)), features=feats, k=4)
    ls = project.labels.label_set("finding")
    project.labels.class_id(ls, "normal")
    project.labels.class_id(ls, "lesion")
    return project, run_id


@pytest.fixture
def board(qtbot, tmp_path):
    from mskstudio.gui.clusters.board import ClusterBoard

    project, run_id = _make_project(tmp_path / "b.mskproj")
    window = StubWindow(project)
    b = ClusterBoard(window)
    qtbot.addWidget(b)
    b.label_set.setCurrentText("finding")
    b.resize(1000, 700)
    b.show()
    yield b, window, run_id
    project.close()


def _labels(project):
    return [tuple(r) for r in project.db.query(
        "SELECT image_id, class_id, source FROM labels ORDER BY image_id, source")]


def test_board_shows_clusters_and_map(board):
    b, window, run_id = board
    assert b.run_id == run_id
    assert b.clusters.count() == 4
    assert len(b.points.points()) == 4
    assert "0/4 clusters reviewed" in b.progress.text()
    b.sort.setCurrentIndex(1)  # spread
    assert b.clusters.count() == 4


def test_label_by_number_key_undo_redo_and_persistence(board, qtbot):
    b, window, run_id = board
    project = window.project
    first = int(b.clusters.item(0).data(Qt.UserRole))
    b.select_clusters([first])
    b.clusters.setFocus()
    qtbot.keyClick(b.clusters, Qt.Key_1)
    normal = project.labels.class_id(project.labels.label_set("finding"), "normal")
    assert project.clusters.cluster(first)["class_id"] == normal
    members = project.clusters.member_ids(first)
    eff = project.labels.effective(project.labels.label_set("finding"))
    assert all(eff[i] == normal for i in members)
    assert "1/4 clusters reviewed" in b.progress.text()
    window.undo_stack.undo()
    assert project.clusters.cluster(first)["class_id"] is None
    assert _labels(project) == [(i, c, s) for i, c, s in _labels(project) if s == "import"]
    window.undo_stack.redo()
    assert project.clusters.cluster(first)["class_id"] == normal

    # persistence: a fresh project handle and a fresh board see the label
    from mskstudio.gui.clusters.board import ClusterBoard

    root = project.root
    project.close()
    reopened = Project.open(root)
    window.project = reopened
    b2 = ClusterBoard(window)
    qtbot.addWidget(b2)
    assert reopened.clusters.cluster(first)["class_id"] == normal
    assert any("normal" in b2.clusters.item(i).toolTip() for i in range(b2.clusters.count()))


def test_discard_merge_split_move_out(board, qtbot):
    b, window, run_id = board
    project = window.project
    ids = [int(b.clusters.item(i).data(Qt.UserRole)) for i in range(4)]

    b.select_clusters([ids[0]])
    assert b.discard_selected()
    assert project.clusters.cluster(ids[0])["discarded"] == 1

    b.select_clusters([ids[1], ids[2]])
    assert b.merge_selected()
    assert b.clusters.count() == 3

    b.select_clusters([ids[3]])
    assert b.split_selected(2)
    assert b.clusters.count() == 4

    b.select_clusters([ids[0]])
    assert b.detail.cluster_id == ids[0]
    b.detail.grid.item(0).setSelected(True)
    b.detail.grid.item(1).setSelected(True)
    b.detail.move_btn.click()
    assert b.clusters.count() == 5

    # double-click opens the image in the viewer
    item = b.detail.grid.item(0)
    b.detail.grid.itemDoubleClicked.emit(item)
    assert window.opened == [int(item.data(Qt.UserRole))]

    assert window.undo_stack.count() == 4
    for _ in range(4):
        window.undo_stack.undo()
    assert b.clusters.count() == 4
    assert all(project.clusters.cluster(i)["discarded"] == 0 for i in ids)
    assert all(project.clusters.cluster(i)["merged_into"] is None for i in ids)
    for _ in range(4):
        window.undo_stack.redo()
    assert b.clusters.count() == 5
    assert project.clusters.cluster(ids[2])["merged_into"] == ids[1]


def test_human_label_of_members_and_cluster_now(board):
    b, window, run_id = board
    project = window.project
    first = int(b.clusters.item(0).data(Qt.UserRole))
    image = project.clusters.member_ids(first)[0]
    assert b.label_images([image], "lesion")
    ls = project.labels.label_set("finding")
    assert project.labels.effective(ls, sources=("human",))[image] == project.labels.class_id(ls, "lesion")
    window.undo_stack.undo()
    assert image not in project.labels.effective(ls, sources=("human",))

    b.submit_clustering(fast=True)
    assert window.runner.submitted[-1][0] == "cluster"
    assert window.runner.submitted[-1][1]["mode"] == "fast"


def test_failed_action_is_not_left_on_the_stack(board):
    b, window, run_id = board
    first = int(b.clusters.item(0).data(Qt.UserRole))
    window.project.clusters._features.clear()
    (window.project.cache_dir / "clusters" / f"run{run_id}.npy").unlink()
    b.select_clusters([first])
    assert not b.split_selected(2)
    assert isinstance(b.last_error, ValueError)
    assert window.undo_stack.count() == 0


def test_recluster_submits_and_opens_the_new_run(board):
    from mskstudio.jobrun import submit_and_run

    b, window, run_id = board
    b.recluster(2, "merge")
    assert window.runner.submitted[-1] == ("recluster", {"cluster_run_id": run_id, "k": 2, "method": "merge"})
    b.recluster(2)
    kind, params = window.runner.submitted[-1]
    assert (kind, params) == ("recluster", {"cluster_run_id": run_id, "k": 2})
    result = submit_and_run(window.project, kind, params)
    window.runner.job_returned.emit(1, result)
    assert b.run_id == result["cluster_run_id"] != run_id
    assert b.clusters.count() == 2


def test_recluster_dialog_asks_method_and_k(board):
    from mskstudio.gui.clusters.dialog import ReclusterDialog

    dialog = ReclusterDialog(32, 4, board[0])
    assert dialog.params() == {"k": 4, "method": "kmeans"} and dialog.problems() == []
    dialog.method.setCurrentIndex(dialog.method.findData("merge"))
    assert dialog.problems()                          # merging into as many clusters changes nothing
    dialog.k.setValue(2)
    assert dialog.params() == {"k": 2, "method": "merge"} and dialog.problems() == []


def test_deepcluster_dialog_parameters_and_problems(board, tmp_path):
    from mskstudio.gui.clusters.dialog import CPU_INPUT_SIZE, DeepClusterDialog
    from mskstudio.ml.cluster.deepcluster import DEFAULTS
    from mskstudio.ml.cluster.features import default_k

    b, window, _run_id = board
    dialog = DeepClusterDialog(window.project, b, has_gpu=False)
    p = dialog.params()
    n = len(window.project.images.ids())
    assert p["k"] == default_k(n) and p["epochs"] == DEFAULTS["epochs"]
    assert p["input_size"] == CPU_INPUT_SIZE and p["init"] == "scratch"
    assert dialog.problems() == []
    dialog.start.kind.setCurrentIndex(dialog.start.kind.findData("file"))
    dialog.start.file.setText(str(tmp_path / "missing.pt"))
    assert any("missing.pt" in m for m in dialog.problems())
    dialog._accept()
    assert "missing.pt" in dialog.problem.text() and dialog.result() == 0
    assert DeepClusterDialog(window.project, b, has_gpu=True).params()["input_size"] == DEFAULTS["input_size"]

    params = dialog.params()
    params.pop("mode")
    b.submit_clustering(fast=False, **{**params, "init": "scratch"})
    kind, submitted = window.runner.submitted[-1]
    assert kind == "cluster" and submitted["mode"] == "deepcluster" and submitted["k"] == p["k"]

"""Review board (pytest-qt, offscreen) on a phantom project with a tiny trained classifier."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt

from mskstudio.gui.review import review_queue as rq
from mskstudio.ml.explain.gradcam import DEFAULT_SCALES, SINGLE_SCALE, cam_path

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def trained(phantom_project_path, tmp_path_factory):
    from trained_project import build_trained_project

    return build_trained_project(phantom_project_path, tmp_path_factory.mktemp("review"))


@pytest.fixture
def board(qtbot, trained, tmp_path):
    from trained_project import close_window, open_window

    from mskstudio.gui.review.board import ReviewBoard

    w = open_window(qtbot, trained[0], tmp_path)
    b = ReviewBoard(w)
    w.add_workspace("Review", b)
    w.workspace.setCurrentWidget(b)
    qtbot.waitUntil(lambda: b.case is not None, timeout=5000)
    b.setFocus()
    yield b
    close_window(w, b)


def _case(i, pred, probs, label=None, source=None):
    return rq.Case(i, pred, probs, label, source)


def test_order_cases_by_hand():
    cases = [_case(1, 10, {10: 0.9, 11: 0.1}, 10), _case(2, 11, {10: 0.45, 11: 0.55}, 10),
             _case(3, 10, {10: 0.6, 11: 0.4}, 11), _case(4, 11, {10: 0.2, 11: 0.8})]
    assert [c.image_id for c in rq.order_cases(cases, "uncertainty")] == [2, 3, 4, 1]
    # errors only (label given and different), most confident mistake first
    assert [c.image_id for c in rq.order_cases(cases, "error")] == [3, 2]
    assert [c.image_id for c in rq.order_cases(cases, "class", class_id=11)] == [2, 4]
    rnd = rq.order_cases(cases, "random", seed=3)
    assert sorted(c.image_id for c in rnd) == [1, 2, 3, 4]
    assert [c.image_id for c in rnd] == [c.image_id for c in rq.order_cases(cases, "random", seed=3)]
    with pytest.raises(ValueError):
        rq.order_cases(cases, "size")


def test_queue_is_the_holdout_ordered_by_uncertainty(board):
    project = board.project
    metrics = project.models.metrics(board.run_id)
    hold = metrics["holdout"]
    assert len(board.queue) == hold["n"] == board.list.count() > 0
    conf = [c.confidence for c in board.queue]
    assert conf == sorted(conf)
    assert {c.image_id for c in board.queue} == set(hold["image_ids"])
    # reference labels are the import labels of the run's label set, never model labels
    eff = project.labels.effective(board.data.label_set_id, sources=("human", "import", "cluster"))
    assert all(c.label == eff[c.image_id] and c.source == "import" for c in board.queue)
    # error order: only disagreements
    board.order.setCurrentIndex(board.order.findData("error"))
    assert all(c.is_error for c in board.queue)
    board.order.setCurrentIndex(board.order.findData("class"))
    cid = board.class_filter.currentData()
    assert all(c.pred == cid for c in board.queue)


def test_accept_and_correct_write_human_labels_with_undo(board, qtbot):
    project, w = board.project, board.window_
    ls = board.data.label_set_id
    first, second = board.queue[0], board.queue[1]

    def human(image_id):
        return [r.class_id for r in project.labels.labels_of(image_id)
                if r.label_set_id == ls and r.source == "human"]

    n_audit = project.db.scalar("SELECT COUNT(*) FROM audit WHERE action = 'label.set'")
    qtbot.keyClick(board.list, Qt.Key.Key_Return)          # accept (keys work from a child too)
    assert human(first.image_id) == [first.pred]
    assert board.case is second                              # moved on
    # the window's own "2" shortcut (a W/L preset) must not steal the class key
    qtbot.keyClick(board, Qt.Key.Key_2)
    second_class = board.data.classes[1].id
    assert human(second.image_id) == [second_class]
    assert second.label == second_class and second.source == "human"
    assert project.db.scalar("SELECT COUNT(*) FROM audit WHERE action = 'label.set'") == n_audit + 2
    assert "human" in board.labels_text.text() or board.case is not second

    w.undo_stack.undo()
    assert human(second.image_id) == [] and second.source == "import"
    w.undo_stack.undo()
    assert human(first.image_id) == []
    w.undo_stack.redo()
    assert human(first.image_id) == [first.pred]
    # keys: previous / next
    i = board.index
    qtbot.keyClick(board, Qt.Key.Key_Right)
    assert board.index == min(i + 1, len(board.queue) - 1)
    qtbot.keyClick(board, Qt.Key.Key_Left)
    assert board.index == i


def test_gradcam_overlay_computed_off_the_gui_thread_then_cached(board, qtbot):
    case = board.case
    qtbot.waitUntil(lambda: "gradcam" in board.viewer.overlays, timeout=30000)
    assert board.multi_scale.isChecked()    # the default map is the multi-scale one
    assert cam_path(board.project, board.run_id, case.image_id, scales=DEFAULT_SCALES).exists()
    assert board.heat is not None and board.heat.min() >= 0.0 and board.heat.max() <= 1.0
    jobs = board.project.db.query("SELECT kind, status FROM jobs WHERE kind = 'explain'")
    assert [tuple(r) for r in jobs] == [("explain", "done")]
    # single-scale on demand: its own job and cache file, then the map shown changes
    multi = board.heat
    board.multi_scale.setChecked(False)
    single_path = cam_path(board.project, board.run_id, case.image_id, scales=SINGLE_SCALE)
    qtbot.waitUntil(lambda: single_path.exists() and board.heat is not None, timeout=30000)
    assert board.heat.shape == multi.shape and not np.array_equal(board.heat, multi)
    board.multi_scale.setChecked(True)
    assert np.array_equal(board.heat, multi) and "cached" in board.cam_status.text()
    board.opacity.setValue(30)
    assert board.viewer.overlays["gradcam"].opacity() == pytest.approx(0.3)
    board.cmap.setCurrentText("viridis")
    board.show_heat.setChecked(False)
    assert "gradcam" not in board.viewer.overlays
    board.show_heat.setChecked(True)
    # back to a cached case: shown at once, no new job
    board.step(1)
    board.step(-1)
    assert "cached" in board.cam_status.text() and "gradcam" in board.viewer.overlays
    # the screenshot: a case with bones in it
    names = {c.id: c.name for c in board.data.classes}
    k = next((k for k, c in enumerate(board.queue) if names.get(c.label) not in ("blank", "screenshot")), 0)
    board.go_to(k)
    assert board.window_.image_id == board.case.image_id      # the case panel follows
    qtbot.waitUntil(lambda: "gradcam" in board.viewer.overlays, timeout=30000)
    qtbot.waitUntil(lambda: board.viewer.rad is not None, timeout=15000)
    out = Path(os.environ.get("MSKSTUDIO_SHOTS", board.project.root.parent))
    out.mkdir(parents=True, exist_ok=True)
    board.window_.grab().save(str(out / "review.png"))

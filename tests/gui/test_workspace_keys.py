"""Keys in the REAL main window, every workspace loaded (issue 22, item 1).

The cluster board's QShortcuts for 1-9 and M clashed with the viewer's window presets and
ruler: Qt logged "Ambiguous shortcut overload" and dropped the key.  The board tests used a
stub window, so the clash never showed.  Here the whole window is built, each workspace is
shown, and real key events (QTest.keyClick) go through Qt's shortcut machinery.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt, qInstallMessageHandler
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

pytestmark = pytest.mark.gui
HERE = Path(__file__).resolve().parent
# Every plain key the README's tour promises somewhere (viewer, boards, annotate dock).
KEYS = [*(getattr(Qt.Key, f"Key_{n}") for n in range(1, 10)),
        *(getattr(Qt.Key, f"Key_{c}") for c in "ABCDEFGHILMOPRSUVX"),
        Qt.Key.Key_BracketLeft, Qt.Key.Key_BracketRight, Qt.Key.Key_PageUp, Qt.Key.Key_PageDown,
        Qt.Key.Key_Delete, Qt.Key.Key_Escape]


def _add_cluster_run(root: Path) -> int:
    from mskstudio.ml.cluster import features as F
    from mskstudio.store import Project

    with Project.open(root) as p:
        ids = p.images.ids()
        rng = np.random.default_rng(0)
        assign = np.arange(len(ids)) % 5
        feats = F.l2_normalise(rng.normal(size=(len(ids), 8)).astype(np.float32) + 2 * assign[:, None])
        run = p.clusters.create_run(image_ids=ids, assign=assign, distance=rng.random(len(ids)),
                                    member_xy=rng.normal(size=(len(ids), 2)), features=feats, k=5)
        ls = p.labels.label_set("finding")
        for name in ("normal", "lesion", "artefact"):
            p.labels.class_id(ls, name)
        return run


@pytest.fixture
def full_window(qtbot, qapp, project_copy):
    from mskstudio.gui.app import make_app
    from mskstudio.gui.main_window import MainWindow

    run_id = _add_cluster_run(project_copy)
    make_app()
    w = MainWindow(project_copy)  # every workspace, dock and menu, as a user gets it
    w.runner.subprocess_prefix = [sys.executable, str(HERE / "jobhost.py")]
    w.confirm = lambda *a: True
    qtbot.addWidget(w)
    w.resize(1600, 1000)
    w.show()
    w.activateWindow()
    qtbot.waitUntil(lambda: w.viewer.rad is not None, timeout=15000)
    messages: list[str] = []
    previous = qInstallMessageHandler(lambda _mode, _ctx, msg: messages.append(msg))
    w.qt_messages = messages
    w.cluster_run_id = run_id
    yield w
    qInstallMessageHandler(previous)
    w.runner.shutdown(5)
    w.viewer.loader.wait(5000)
    for d in list(w.dialogs):
        with contextlib.suppress(RuntimeError):
            d.close()


def _tab(w, title: str) -> int:
    for i in range(w.workspace.count()):
        if w.workspace.tabText(i) == title:
            return i
    raise AssertionError(f"no workspace {title!r}: {[w.workspace.tabText(i) for i in range(w.workspace.count())]}")


def _ambiguous(messages) -> list[str]:
    return [m for m in messages if "Ambiguous shortcut" in m]


def test_no_workspace_has_an_ambiguous_key(full_window, qtbot):
    w = full_window
    assert not w.workspace_errors, w.workspace_errors
    titles = [w.workspace.tabText(i) for i in range(w.workspace.count())]
    assert {"Viewer", "Clusters", "Review", "Label noise"} <= set(titles)
    for i, title in enumerate(titles):
        w.workspace.setCurrentIndex(i)
        qtbot.wait(20)
        focus = QApplication.focusWidget() or w.workspace.currentWidget()
        for key in KEYS:
            if key in (Qt.Key.Key_Escape,) and QApplication.activeModalWidget() is not None:
                continue
            QTest.keyClick(QApplication.focusWidget() or focus, key)
            for d in list(w.dialogs):  # a key that opened a dialog (none should) is closed again
                with contextlib.suppress(RuntimeError):
                    d.close()
        assert not _ambiguous(w.qt_messages), f"{title}: {_ambiguous(w.qt_messages)}"
        w.undo_stack.clear()


def test_cluster_board_keys_work_in_the_real_window(full_window, qtbot):
    w = full_window
    w.workspace.setCurrentIndex(_tab(w, "Clusters"))
    board = w.workspace.currentWidget()
    board.run_combo.setCurrentIndex(board.run_combo.findData(w.cluster_run_id))
    board.label_set.setCurrentText("finding")
    qtbot.waitUntil(lambda: board.clusters.count() == 5)
    assert QApplication.focusWidget() is board.clusters, "showing the board gives it the keyboard"
    p = w.project
    ls = p.labels.find_label_set("finding")
    classes = board.review_classes()

    first = int(board.clusters.item(0).data(Qt.UserRole))
    board.select_clusters([first])
    QTest.keyClick(board.clusters, Qt.Key.Key_2)
    assert p.clusters.cluster(first)["class_id"] == classes[1].id
    members = p.clusters.member_ids(first)
    assert {p.labels.effective(ls)[i] for i in members} == {classes[1].id}
    assert w.viewer.tool == "pan" and w.undo_stack.count() == 1

    a, b = (int(board.clusters.item(i).data(Qt.UserRole)) for i in (1, 2))
    board.select_clusters([a, b])
    QTest.keyClick(board.clusters, Qt.Key.Key_M)
    assert p.clusters.cluster(b)["merged_into"] == a
    assert w.viewer.tool == "pan", "M merged on the board; it did not pick the viewer's ruler"

    board.select_clusters([a])
    QTest.keyClick(board.clusters, Qt.Key.Key_S)
    assert board.clusters.count() == 5  # 5 - 1 merged + 1 split off
    c = int(board.clusters.item(3).data(Qt.UserRole))
    board.select_clusters([c])
    QTest.keyClick(board.clusters, Qt.Key.Key_D)
    assert p.clusters.cluster(c)["discarded"] == 1
    QTest.keyClick(board.clusters, Qt.Key.Key_Right)
    assert board.selected_cluster_ids() and board.selected_cluster_ids() != [c]

    # Typing in "New class" types: D is a letter there, not Discard.
    board.new_class.setFocus()
    QTest.keyClicks(board.new_class, "Dm3")
    assert board.new_class.text() == "Dm3"
    assert w.undo_stack.count() == 4
    assert not _ambiguous(w.qt_messages), _ambiguous(w.qt_messages)

    # Another label set: the first set's classes are not shown as this set's labels.
    def tip(cid):
        return next(board.clusters.item(i).toolTip() for i in range(board.clusters.count())
                    if int(board.clusters.item(i).data(Qt.UserRole)) == cid)

    assert classes[1].name in tip(first)
    board.label_set.setCurrentText("site")
    assert "unlabelled" in tip(first) and "0/" in board.progress.text().split("clusters reviewed")[0]


def test_viewer_keys_work_in_the_real_window(full_window, qtbot):
    w = full_window
    w.workspace.setCurrentIndex(_tab(w, "Clusters"))
    w.workspace.setCurrentIndex(_tab(w, "Viewer"))
    w.viewer.view.setFocus()
    QTest.keyClick(w.viewer.view, Qt.Key.Key_M)
    assert w.viewer.tool == "ruler"
    QTest.keyClick(w.viewer.view, Qt.Key.Key_A)
    assert w.viewer.tool == "angle"
    QTest.keyClick(w.viewer.view, Qt.Key.Key_Escape)
    assert w.viewer.tool == "pan"
    before = w.viewer.window
    QTest.keyClick(w.viewer.view, Qt.Key.Key_5)  # full range
    assert w.viewer.window != before
    full = w.viewer.window
    QTest.keyClick(w.viewer.view, Qt.Key.Key_2)  # bone
    assert w.viewer.window != full
    assert not _ambiguous(w.qt_messages), _ambiguous(w.qt_messages)


def _readme_keys() -> dict[str, list[str]]:
    """The keys the README's tour promises, read from the README itself."""
    import re

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    clusters = re.search(r"Clusters tab \(keys ([^;)]*)", text).group(1)
    annotate = re.search(r"Annotate dock \(([^)]*)\)", text).group(1)
    viewer = re.search(r"keys 1–5 presets, ([^;)]*)", text).group(1)
    return {"Clusters": [k.strip() for k in clusters.split(",")],
            "Annotate": [part.split()[0] for part in annotate.split(",")],
            "Viewer": ["1", "5"] + [part.split()[0] for part in viewer.split(",")]}


def test_help_lists_every_key_the_readme_promises(full_window):
    w = full_window
    dialog = w.show_shortcuts()
    rows = [tuple(dialog.table.item(r, c).text() for c in range(3)) for r in range(dialog.table.rowCount())]
    promised = _readme_keys()
    assert promised["Clusters"] == ["1–9", "D", "M", "S"] and "X" in promised["Annotate"]

    def keys_in(where: str) -> set[str]:
        return {k.strip() for place, _a, keys in rows if place.startswith(where) for k in keys.split(",")}

    assert set(promised["Clusters"]) <= keys_in("Clusters tab")
    assert set(promised["Annotate"]) <= keys_in("Annotate dock")
    assert set(promised["Viewer"]) <= keys_in("View") | keys_in("Viewer")
    assert keys_in("Review tab") and keys_in("Label noise tab")

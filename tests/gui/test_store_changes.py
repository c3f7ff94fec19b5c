"""Edits by another process show in the open window at once (issue 22: one notification from
the store).  The window's change signal used to be its own: a label written by the CLI in a
terminal stayed invisible until the project was reopened, and the board's Undo never saw a
CLI edit (the CLI kept a journal of its own)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from mskstudio.store import Project

pytestmark = pytest.mark.gui
BOARD = ("Clusters", "mskstudio.gui.clusters.board:ClusterBoard")


def _cli(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "mskstudio", *args], cwd=os.getcwd(), capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _covered(board) -> int:
    return board.project.clusters.progress(board.run_id, board.project.labels.find_label_set("finding"))[
        "images_covered"] if board.project.labels.find_label_set("finding") else 0


def test_cli_edits_show_in_the_open_window_and_share_its_undo(window, qtbot):
    window.load_workspaces(entries=[BOARD], docks=[], menus=[])
    board = window.workspace.widget(window.workspace.count() - 1)
    window.workspace.setCurrentWidget(board)
    root = window.project.root
    reloads = []
    original = window.browser.reload
    window.browser.reload = lambda *a, **k: (reloads.append(1), original(*a, **k))[1]

    # A cluster run written by another process (as the `cluster` job's subprocess does).
    with Project.open(root) as other:
        ids = other.images.ids()
        rng = np.random.default_rng(0)
        run_id = other.clusters.create_run(image_ids=ids, assign=np.arange(len(ids)) % 4,
                                           distance=rng.random(len(ids)), member_xy=rng.normal(size=(len(ids), 2)),
                                           features=rng.normal(size=(len(ids), 8)).astype(np.float32), k=4)
    qtbot.waitUntil(lambda: board.run_id == run_id, timeout=10000)
    board.label_set.setCurrentText("finding")  # the set the reviewer works in
    first, second = [r["id"] for r in window.project.clusters.clusters(run_id, order="index")[:2]]
    size = window.project.clusters.cluster(first)["size"]

    # The CLI labels a cluster while the window is open: board, tree and undo stack follow.
    _cli("clusters", str(root), str(run_id), "label", str(first), "--class", "normal", "--label-set", "finding")
    qtbot.waitUntil(lambda: f"{size}/{len(ids)} images labelled" in board.progress.text(), timeout=10000)
    assert reloads, "the case tree reloaded (labels changed)"
    assert window.undo_stack.count() == 1 and "from cli" in window.undo_stack.undoText()
    assert max(window.store_watch.costs) < 0.05, "a poll never blocks the GUI thread"

    # The board's Undo undoes the CLI's edit, through the journal.
    window.undo_stack.undo()
    assert _covered(board) == 0 and "0/" in board.progress.text().split("clusters reviewed")[1]
    assert window.project.cluster_edits.history(run_id)[0]["state"] == "undone"

    # A board edit, undone from the CLI: the stack steps back, the board redraws.
    board.select_clusters([second])
    assert board.discard_selected()
    assert window.undo_stack.index() == 1 and window.undo_stack.count() == 1  # the redo side dropped
    assert "undone: discard" in _cli("clusters", str(root), str(run_id), "undo")
    qtbot.waitUntil(lambda: window.undo_stack.index() == 0, timeout=10000)
    assert window.project.clusters.cluster(second)["discarded"] == 0
    # … and redone from the CLI: the stack steps forward again.
    _cli("clusters", str(root), str(run_id), "redo")
    qtbot.waitUntil(lambda: window.undo_stack.index() == 1, timeout=10000)
    assert window.project.clusters.cluster(second)["discarded"] == 1


def test_undo_before_the_poll_adopts_the_later_cli_edit_first(window, qtbot):
    """The CLI edits and the user presses Undo before the next poll: the board's own edit is
    not undone under the CLI's later one; the stack adopts the CLI edit, and the next Undo
    undoes it (the latest edit, whatever made it)."""
    window.load_workspaces(entries=[BOARD], docks=[], menus=[])
    board = window.workspace.widget(window.workspace.count() - 1)
    window.workspace.setCurrentWidget(board)
    p = window.project
    ids = p.images.ids()
    rng = np.random.default_rng(1)
    run_id = p.clusters.create_run(image_ids=ids, assign=np.arange(len(ids)) % 3, distance=rng.random(len(ids)),
                                   member_xy=rng.normal(size=(len(ids), 2)), k=3)
    board.reload()
    board.label_set.setCurrentText("finding")
    a, b = [r["id"] for r in p.clusters.clusters(run_id, order="index")[:2]]
    board.select_clusters([a])
    assert board.discard_selected()
    _cli("clusters", str(p.root), str(run_id), "label", str(b), "--class", "normal", "--label-set", "finding")
    window.store_watch.timer.stop()  # the user is faster than the poll
    window.undo_stack.undo()
    qtbot.waitUntil(lambda: window.undo_stack.count() == 2, timeout=10000)
    assert p.clusters.cluster(a)["discarded"] == 1, "the board's edit stays: a later edit sits on it"
    assert window.undo_stack.index() == 2 and "from cli" in window.undo_stack.undoText()
    window.undo_stack.undo()
    assert p.clusters.cluster(b)["class_id"] is None and p.clusters.cluster(a)["discarded"] == 1
    window.undo_stack.undo()
    assert p.clusters.cluster(a)["discarded"] == 0
    assert [e["state"] for e in p.cluster_edits.history(run_id)] == ["undone", "undone"]

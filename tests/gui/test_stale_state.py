"""Views that kept stale state (issue 22, item 9): a new model run missing from Similar cases until
the project was reopened, filters from the last project showing "0 of 600 images", the tree
highlighting another image than the viewer's, Project info of the previous project."""

from __future__ import annotations

import shutil

import pytest
from PySide6.QtCore import Qt

pytestmark = pytest.mark.gui


def test_a_run_finished_in_the_background_appears_in_similar_cases(window, qtbot):
    window.load_workspaces(entries=[], menus=[], docks=[
        ("Similar cases", "mskstudio.gui.case.gallery:Gallery", Qt.DockWidgetArea.RightDockWidgetArea)])
    gallery = window.docks["Similar cases"].view()
    p = window.project
    run = p.models.create("classifier", "tinycnn", name="new classifier")
    p.db.execute("UPDATE model_runs SET checkpoint_sha = ?, status = 'done' WHERE id = ?", ("0" * 64, run))
    assert gallery.rep.findData(run) < 0
    seen = []
    window.data_changed.connect(seen.append)
    with qtbot.waitSignal(window.runner.job_finished, timeout=30000):
        window.runner.submit("gui-test-sleep", {"steps": 1, "step_s": 0.01})
    qtbot.waitUntil(lambda: bool(seen), timeout=5000)
    assert "runs" in seen[-1]
    assert gallery.rep.findData(run) >= 0, "the new run is offered without reopening the project"


def test_filters_that_hide_every_image_are_reset_and_announced(window, qtbot, project_copy, tmp_path):
    b = window.browser
    b.search.setText("no pseudonym is like this")
    assert b.order == []
    other = tmp_path / "other.mskproj"
    shutil.copytree(project_copy, other, ignore=shutil.ignore_patterns("*.db-wal", "*.db-shm"))
    window.open_project(other)
    assert len(b.order) == len(b.rows) > 0
    assert "were reset" in window.statusBar().currentMessage()


def test_tree_never_highlights_another_image_than_the_viewers(window, qtbot):
    b = window.browser
    first, hidden = b.order[0], b.order[-1]
    window.open_image(first)
    pseudonym = next(r["pseudonym"] for r in b.rows if r["id"] == first)
    b.search.setText(pseudonym)  # keeps only this patient's images
    if hidden in b.order:
        pytest.skip("the phantom patient holds every image")
    window.open_image(hidden)  # e.g. the Review board following a finished run
    assert window.viewer.image_id == hidden
    leaf = b.tree.currentItem()
    assert leaf is None or leaf.data(0, Qt.ItemDataRole.UserRole) == ("image", hidden)
    assert not b.grid.currentIndex().isValid()
    assert f"#{hidden} is hidden by the filters" in b.count.text()


def test_project_info_follows_the_open_project(window, project_copy, tmp_path):
    info = window.show_project_info()
    assert info in window.dialogs
    other = tmp_path / "second.mskproj"
    shutil.copytree(project_copy, other, ignore=shutil.ignore_patterns("*.db-wal", "*.db-shm"))
    window.open_project(other)
    assert info not in window.dialogs, "the old project's info closed with it"
    again = window.show_project_info()
    values = [again.findChildren(type(again.layout_.itemAt(0).widget()))[0].item(r, 1).text()
              for r in range(again.findChildren(type(again.layout_.itemAt(0).widget()))[0].rowCount())]
    assert str(other) in " ".join(values) or other.name in " ".join(values)

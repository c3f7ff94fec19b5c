"""The shell: menus and shortcuts, undo/redo of case edits, settings, workspaces, closing."""

from __future__ import annotations

import types

import pytest

pytestmark = pytest.mark.gui


def test_menus_show_shortcuts_and_help_lists_them(qtbot, window):
    w = window
    titles = [a.text().replace("&", "") for a in w.menuBar().actions()]
    assert titles == ["File", "Edit", "View", "Jobs", "Help"]
    for name in ("next", "previous", "next_unlabelled", "toggle_overlays", "preset1", "preset5",
                 "undo", "redo"):
        assert not w.actions_by_name[name].shortcut().isEmpty(), name
    dialog = w.show_shortcuts()
    actions = {dialog.table.item(r, 1).text(): dialog.table.item(r, 2).text()
               for r in range(dialog.table.rowCount())}
    assert actions["Next unlabelled image"] == "U"
    assert actions["Bone"] == "2"
    assert "Undo" in actions
    file_menu = w.menuBar().actions()[0].menu()
    texts = [a.text().replace("&", "") for a in file_menu.actions()]
    for entry in ("New project…", "Open project…", "Open recent", "Import DICOM folder…",
                  "Import clinical CSV…", "Project info"):
        assert entry in texts


def test_clinical_edit_undo_redo(qtbot, window):
    w = window
    panel = w.case_panel
    pid = panel.row.patient_id
    before = w.project.images.clinical(pid).get("diagnosis")
    editor = panel.editors["diagnosis"]
    editor.setText("osteochondroma (edited)")
    editor.editingFinished.emit()
    assert w.project.images.clinical(pid)["diagnosis"] == "osteochondroma (edited)"
    assert w.undo_stack.count() == 1
    audit = w.project.db.one("SELECT * FROM audit WHERE action='clinical.edit' ORDER BY id DESC")
    assert audit["entity_id"] == pid
    w.actions_by_name["undo"].trigger()
    assert w.project.images.clinical(pid).get("diagnosis") == before
    assert panel.editors["diagnosis"].text() == (before or "")
    w.actions_by_name["redo"].trigger()
    assert w.project.images.clinical(pid)["diagnosis"] == "osteochondroma (edited)"
    # age with its unit, validated as a number
    panel.editors["age_years"].setText("42.5")
    panel.editors["age_years"].editingFinished.emit()
    assert w.project.images.clinical(pid)["age_years"] == 42.5


def test_flag_edit_and_labels_and_tags(qtbot, window):
    w = window
    panel = w.case_panel
    image_id = w.image_id
    panel.flag_boxes["excluded"].setChecked(True)
    assert w.project.images.record(image_id).excluded is True
    w.undo_stack.undo()
    assert w.project.images.record(image_id).excluded is False
    assert not panel.flag_boxes["excluded"].isChecked()
    labels = w.project.labels.labels_of(image_id)
    assert panel.labels.rowCount() == len(labels)
    panel.tabs.setCurrentWidget(panel.tags)
    keywords = {panel.tags.item(r, 1).text() for r in range(panel.tags.rowCount())}
    assert "Rows" in keywords and "PixelData" not in keywords


def test_lab_edit_undo(qtbot, window):
    w = window
    panel = w.case_panel
    pid = panel.row.patient_id
    if panel.labs.rowCount() == 0:
        w.project.images.set_lab(pid, "ALP", 100.0, "U/L", 40.0, 130.0)
        panel.refresh()
    name = panel.labs.item(0, 0).text()
    old = next(r["value"] for r in w.project.images.labs(pid) if r["name"] == name)
    panel.labs.item(0, 1).setText("999")
    lab = next(r for r in w.project.images.labs(pid) if r["name"] == name)
    assert lab["value"] == 999
    w.undo_stack.undo()
    assert next(r["value"] for r in w.project.images.labs(pid) if r["name"] == name) == old


def test_next_unlabelled(qtbot, window):
    w = window
    unl = [i for i in w.browser.order if w.browser.is_unlabelled(i)]
    w.actions_by_name["next_unlabelled"].trigger()
    if unl:
        assert w.image_id in unl
    # label everything but the last image in a fresh set: next unlabelled goes there
    set_id = w.project.labels.label_set("gui-test")
    cls = w.project.labels.class_id(set_id, "a")
    w.project.labels.set_labels(w.browser.order[:-1], set_id, cls)
    w.browser.reload()
    w.browser.label_set.setCurrentText("gui-test")
    w.open_image(w.browser.order[0])
    w.actions_by_name["next_unlabelled"].trigger()
    assert w.image_id == w.browser.order[-1]


def test_settings_persist_layout_and_recent(qtbot, qapp, project_copy, tmp_path):
    from mskstudio.gui import settings as prefs
    from mskstudio.gui.main_window import MainWindow

    w = MainWindow(project_copy, load_workspaces=False)
    qtbot.addWidget(w)
    w.show()
    w.resize(761, 555)  # fits the offscreen screen: restoreGeometry clamps to it
    w.docks["jobs"].hide()
    qtbot.wait(10)
    expected = (w.size().width(), w.size().height())
    assert expected != (1600, 1000)  # not the default size
    w.close()
    assert str(project_copy.resolve()) in prefs.recent_projects()
    assert str(tmp_path / "settings") in prefs.settings().fileName()
    w2 = MainWindow(None, load_workspaces=False)
    qtbot.addWidget(w2)
    w2.show()
    assert (w2.size().width(), w2.size().height()) == expected
    assert w2.docks["jobs"].isHidden()
    w2.fill_recent_menu()
    assert any(str(project_copy.resolve()) == a.text() for a in w2.recent_menu.actions())


def test_workspaces_missing_or_broken_are_shown_not_skipped(qtbot, qapp, monkeypatch):
    import sys

    from PySide6.QtWidgets import QLabel

    from mskstudio.gui.main_window import MainWindow

    good = types.ModuleType("gui_test_ws_good")
    good.Board = lambda mw: QLabel(f"board of {type(mw).__name__}")
    monkeypatch.setitem(sys.modules, "gui_test_ws_good", good)
    bad = types.ModuleType("gui_test_ws_bad")
    bad.Board = lambda mw: __import__("a_module_that_is_missing_inside")
    monkeypatch.setitem(sys.modules, "gui_test_ws_bad", bad)
    w = MainWindow(None, load_workspaces=False)
    qtbot.addWidget(w)
    w.load_workspaces([("Good", "gui_test_ws_good:Board"), ("Absent", "gui_test_ws_absent_xyz:Board"),
                       ("Bad", "gui_test_ws_bad:Board")], docks=[], menus=[])
    tabs = [w.workspace.tabText(i) for i in range(w.workspace.count())]
    assert tabs == ["Viewer", "Good", "Absent ⚠", "Bad ⚠"]  # a missing module is reported, not skipped
    assert "gui_test_ws_absent_xyz" in w.workspace_errors["Absent"]
    assert "a_module_that_is_missing_inside" in w.workspace_errors["Bad"]


def test_close_with_running_job_asks_then_cancels(qtbot, window):
    w = window
    job_id = w.runner.submit("gui-test-sleep", {"steps": 500, "step_s": 0.02})
    qtbot.waitUntil(lambda: w.runner.handle(job_id).state == "running", timeout=10000)
    asked = []
    w.confirm = lambda *a: asked.append(a) or False
    assert not w.close()
    assert asked and w.isVisible()
    w.confirm = lambda *a: True
    assert w.close()
    from mskstudio.store import Project

    with Project.open(w.project.root) as p:
        assert p.jobs.get(job_id)["status"] == "cancelled"


def test_real_workspaces_load_without_errors(qtbot, qapp, project_copy):
    from mskstudio.gui.main_window import MainWindow

    w = MainWindow(project_copy)
    qtbot.addWidget(w)
    w.show()
    assert w.workspace_errors == {}
    assert w.workspace.tabText(0) == "Viewer"
    qtbot.waitUntil(lambda: w.viewer.rad is not None, timeout=15000)
    w.viewer.loader.wait(5000)


def test_window_with_all_docks_fits_a_laptop_screen(qtbot, qapp, project_copy):
    """Docks scroll instead of adding their minimum heights up past the screen (they made
    the window at least 1,221 px tall), and the default split shows the case form whole."""
    from mskstudio.gui.main_window import MainWindow

    w = MainWindow(project_copy)
    qtbot.addWidget(w)
    w.resize(1600, 1000)
    w.show()
    qtbot.waitUntil(lambda: w.viewer.rad is not None, timeout=15000)
    assert set(w.docks) >= {"case", "Similar cases", "Annotate", "jobs"}
    assert w.minimumSizeHint().height() <= 768 - 40          # a 1366 x 768 screen less its bar
    assert w.height() == 1000
    case = w.docks["case"]
    assert case.widget().height() >= case.view().minimumSizeHint().height()
    for dock in w.docks.values():                             # never cut at the right edge
        assert dock.widget().width() >= dock.view().minimumSizeHint().width()
    w.viewer.loader.wait(5000)

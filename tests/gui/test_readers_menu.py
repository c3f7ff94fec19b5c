"""The Readers menu: current reader, the study wizard, a session from the main window, results."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PySide6.QtWidgets import QTableWidget

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_reader_study import region_set  # noqa: E402

pytestmark = pytest.mark.gui
MENU = "mskstudio.gui.readers.menu:add_readers_menu"


def _menu_window(window):
    window.load_workspaces(entries=[], docks=[], menus=[MENU])
    return window


@pytest.fixture
def restore_reader(monkeypatch):
    """Choosing a reader sets MSKSTUDIO_USER and the stored preference: both go back after."""
    import os

    from mskstudio.gui import settings as prefs

    monkeypatch.setenv("MSKSTUDIO_USER", os.environ.get("MSKSTUDIO_USER", "tester"))
    yield
    prefs.settings().remove("reader")


def test_chosen_reader_is_the_author_of_new_labels(qtbot, window, restore_reader):
    from mskstudio.gui.readers import menu

    w = _menu_window(window)
    dialog = menu.ReaderDialog(w.project, w)
    dialog.name.setCurrentText("dr_new")
    dialog.role.setCurrentText("specialist")
    dialog.years.setValue(6)
    name = dialog.save()
    menu.apply_reader(w, name)
    assert w.project.author == "dr_new" and "dr_new" in w.reader_action.text()
    ls = w.project.labels.label_set("dx")
    c = w.project.labels.class_id(ls, "a")
    w.project.labels.set_label(w.image_id, ls, c, source="human")
    assert w.project.readers.human_labels(ls) == {"dr_new": {w.image_id: c}}
    assert w.project.readers.find("dr_new")["role"] == "specialist"


def test_wizard_session_and_results(qtbot, window, tmp_path, restore_reader):
    from mskstudio.gui.readers import menu
    from mskstudio.ml.readers.simulate import simulate_reads

    w = _menu_window(window)
    names = region_set(w.project)
    wizard = menu.new_study(w)
    wizard.name.setText("wiz")
    wizard.label_set.setCurrentText("region")
    wizard.truth_set.setCurrentText("truth:region")
    wizard.images.setText("sample:3-per-class")
    wizard.new_readers.setText("ann, bob")
    wizard.arm_clinical.setChecked(True)
    assert wizard.params()["classes"] == names and wizard.params()["arms"] == ["image", "clinical"]
    wizard.accept()
    study = w.project.readers.study("wiz")
    assert study is not None and len(w.project.readers.case_images(study["id"])) == 9
    # a session from the menu hides the main window until the reading window closes
    w.project.author = "ann"
    reading = menu.start_session(w, int(study["id"]))
    qtbot.waitUntil(lambda: reading.case is not None and reading.viewer.rad is not None, timeout=20000)
    assert not w.isVisible()
    reading.choose(1)
    reading.next_case()
    reading.close()
    assert w.isVisible()
    # results: the analysis job fills the tabs
    simulate_reads(w.project, "wiz", {"ann": 0.2, "bob": 0.3}, seed=1)
    page = menu.open_results(w, int(study["id"]))
    assert page.progress.rowCount() == 4
    page.analyze()
    qtbot.waitUntil(lambda: page.tabs.count() >= 5, timeout=60000)
    titles = [page.tabs.tabText(i) for i in range(page.tabs.count())]
    assert {"ROC + readers", "Accuracy", "Cohen's κ", "Fleiss' κ", "Arms compared"} <= set(titles)
    perf = next(page.tabs.widget(i) for i in range(page.tabs.count())
                if page.tabs.tabText(i).startswith("Accuracy ·"))
    assert isinstance(perf, QTableWidget) and perf.rowCount() >= 2 * 3
    page.close()

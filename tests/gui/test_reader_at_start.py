"""The app asks once who is reading when the current reader has no profile."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QLabel

pytestmark = pytest.mark.gui
MENU = "mskstudio.gui.readers.menu:add_readers_menu"


def _open_dialogs(w):
    from mskstudio.gui.readers.menu import ReaderDialog

    return [d for d in w.findChildren(ReaderDialog) if d.isVisible()]


def test_offscreen_with_mskstudio_user_is_not_asked(qtbot, window, monkeypatch):
    from mskstudio.gui.readers.menu import has_profile

    monkeypatch.setenv("MSKSTUDIO_USER", "tester")
    window.load_workspaces(entries=[], docks=[], menus=[MENU])
    qtbot.wait(50)  # the start check runs from the event loop
    assert not has_profile(window.project, window.project.author)  # it would be asked otherwise
    assert window.reader_asked and window.reader_from_env == "tester"
    assert _open_dialogs(window) == []


def test_reader_without_profile_is_asked_once(qtbot, window, monkeypatch):
    from mskstudio.gui import settings as prefs
    from mskstudio.gui.readers.menu import ask_reader_at_start, has_profile

    monkeypatch.setenv("MSKSTUDIO_USER", "tester")
    w = window
    w.load_workspaces(entries=[], docks=[], menus=[MENU])
    qtbot.wait(50)
    w.project.readers.save("ann", role="specialist", years=9)
    # as on a desktop started without MSKSTUDIO_USER
    w.reader_from_env, w.reader_asked = None, False
    dialog = ask_reader_at_start(w, platform="xcb")
    assert dialog is not None and dialog.isVisible()
    assert w.project.author in "".join(label.text() for label in dialog.findChildren(QLabel))
    # picking an existing reader shows their profile
    dialog.name.setCurrentText("ann")
    assert dialog.role.currentText() == "specialist" and dialog.years.value() == 9
    # a new one with role and years becomes the current reader
    dialog.name.setCurrentText("dr_start")
    dialog.role.setCurrentText("resident")
    dialog.years.setValue(2)
    dialog.accept()
    assert w.project.author == "dr_start" and "dr_start" in w.reader_action.text()
    assert has_profile(w.project, "dr_start") and w.project.readers.find("dr_start")["role"] == "resident"
    assert prefs.settings().value("reader") == "dr_start"
    # once per run: not asked again, and a reader with a profile is never asked
    assert ask_reader_at_start(w, platform="xcb") is None
    w.reader_asked = False
    assert ask_reader_at_start(w, platform="xcb") is None
    # the Readers menu still changes the reader
    assert w.reader_action.isEnabled()

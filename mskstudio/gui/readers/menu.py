"""The "Readers" menu: choose the current reader, start a reading session, set up and
analyse reader studies.

The current reader is the project's ``author`` (what every human label, mask and box
records); the choice is kept in the preferences and applied to each project opened.
When the first project opens and its current reader has no profile (no role, no years),
the app asks once who is reading — except offscreen (tests, smoke runs) with
``MSKSTUDIO_USER`` set, where that name is the choice.
"""

from __future__ import annotations

import os

from PySide6.QtCore import QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QInputDialog,
    QLabel,
    QMenu,
)

from mskstudio.gui import settings as prefs

ROLES = ("", "resident", "specialist", "subspecialist", "other")


def add_readers_menu(window) -> QMenu:
    menu = window.menuBar().addMenu("&Readers")
    window.reader_action = menu.addAction("Reader: …", lambda: choose_reader(window))
    menu.addSeparator()
    window.actions_by_name["reader_study_new"] = menu.addAction(
        "New reader study…", lambda: new_study(window))
    window.actions_by_name["reader_session"] = menu.addAction(
        "Start reading session…", lambda: start_session(window))
    window.actions_by_name["reader_analysis"] = menu.addAction(
        "Reader study results…", lambda: open_results(window))
    # What the environment named before a stored choice is applied (that choice also
    # sets MSKSTUDIO_USER, for projects opened later).
    window.reader_from_env = os.environ.get("MSKSTUDIO_USER")
    window.reader_asked = False
    window.project_changed.connect(lambda: apply_reader(window))
    window.project_changed.connect(lambda: QTimer.singleShot(0, lambda: ask_reader_at_start(window)))
    apply_reader(window)
    QTimer.singleShot(0, lambda: ask_reader_at_start(window))
    return menu


def has_profile(project, name: str) -> bool:
    """Whether reader ``name`` exists with a role or years (a bare row is made on first use)."""
    row = project.readers.find(name)
    return row is not None and (row["role"] is not None or row["years"] is not None)


def ask_reader_at_start(window, *, platform: str | None = None) -> ReaderDialog | None:
    """Once per run, when a project is open: ask who is reading if the current reader has
    no profile.  The dialog is window-modal but not blocking; OK stores the choice."""
    if getattr(window, "reader_asked", True) or window.project is None:
        return None
    window.reader_asked = True
    platform = platform if platform is not None else QGuiApplication.platformName()
    if platform == "offscreen" and window.reader_from_env:
        return None  # tests and smoke runs: MSKSTUDIO_USER is the choice
    if has_profile(window.project, window.project.author):
        return None
    dialog = ReaderDialog(window.project, window, intro=(
        f"No reader profile for <b>{window.project.author}</b> yet. Who is reading? Pick a reader "
        "or type a new name with role and years; every label, mask and box you make records it. "
        "Change it later in Readers › Reader…"))
    dialog.setWindowTitle("Who is reading?")
    dialog.accepted.connect(lambda: _apply_choice(window, dialog))
    window.dialogs.append(dialog)
    dialog.open()
    return dialog


def stored_reader() -> str | None:
    return prefs.settings().value("reader") or None


def apply_reader(window, name: str | None = None) -> None:
    """Make ``name`` (default: the stored choice) the current reader of the open project."""
    name = name or stored_reader()
    if name:
        os.environ["MSKSTUDIO_USER"] = name  # projects opened later start with it too
        if window.project is not None:
            window.project.author = name
    shown = window.project.author if window.project is not None else (name or "—")
    window.reader_action.setText(f"Reader: {shown}…")


class ReaderDialog(QDialog):
    """Pick an existing reader or type a new name; role and years are optional."""

    def __init__(self, project, parent=None, *, intro: str = ""):
        super().__init__(parent)
        self.setWindowTitle("Current reader")
        self.project = project
        self.name = QComboBox(editable=True)
        self.name.addItems([r["name"] for r in project.readers.all()])
        self.name.setCurrentText(project.author)
        self.role = QComboBox()
        self.role.addItems(ROLES)
        self.years = QDoubleSpinBox(minimum=0, maximum=80, decimals=1, specialValueText="—")
        self.name.currentTextChanged.connect(self._fill)
        form = QFormLayout(self)
        if intro:
            form.addRow(QLabel(intro, wordWrap=True))
        form.addRow("Name", self.name)
        form.addRow("Role", self.role)
        form.addRow("Years of experience", self.years)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self._fill(self.name.currentText())

    def _fill(self, name: str) -> None:
        row = self.project.readers.find(name)
        self.role.setCurrentText((row["role"] if row else None) or "")
        self.years.setValue(float(row["years"]) if row and row["years"] is not None else 0.0)

    def save(self) -> str:
        """Store the profile (the 'do' half) and return the reader's name."""
        name = self.name.currentText().strip()
        if not name:
            raise ValueError("a reader needs a name")
        years = self.years.value() or None
        self.project.readers.save(name, role=self.role.currentText() or None, years=years)
        return name


def choose_reader(window) -> str | None:
    if not window._need_project():
        return None
    dialog = ReaderDialog(window.project, window)
    if dialog.exec() != QDialog.DialogCode.Accepted:
        return None
    return _apply_choice(window, dialog)


def _apply_choice(window, dialog: ReaderDialog) -> str | None:
    """Store the dialog's reader profile, remember it and make it the current reader."""
    try:
        name = dialog.save()
    except ValueError as exc:
        window.show_error("Reader", str(exc))
        return None
    s = prefs.settings()
    s.setValue("reader", name)
    s.sync()
    apply_reader(window, name)
    return name


def _choose_study(window, title: str) -> int | None:
    studies = window.project.readers.studies()
    if not studies:
        window.show_error(title, "No reader study yet: Readers › New reader study… "
                                 "or `mskstudio reader-study create`.")
        return None
    labels = [f"{s['name']} (#{s['id']})" for s in studies]
    choice, ok = QInputDialog.getItem(window, title, "Study", labels, len(labels) - 1, False)
    return int(studies[labels.index(choice)]["id"]) if ok else None


def start_session(window, study_id: int | None = None):
    """Open the reading window for the current reader; the main window hides meanwhile so
    nothing of the project is in view (``mskstudio reader-study read`` opens it alone)."""
    from mskstudio.gui.readers.window import open_reading_window
    from mskstudio.ml.readers.session import WashoutPending

    if not window._need_project():
        return None
    study_id = study_id if study_id is not None else _choose_study(window, "Start reading session")
    if study_id is None:
        return None
    try:
        reading = open_reading_window(window.project, study_id, window.project.author)
    except (ValueError, WashoutPending) as exc:
        window.show_error("Reading session", str(exc))
        return None
    window.dialogs.append(reading)
    reading.closed.connect(window.show)
    reading.show()
    window.hide()
    return reading


def new_study(window):
    from mskstudio.gui.readers.wizard import StudyWizard

    if not window._need_project():
        return None
    wizard = StudyWizard(window.project, window)
    window.dialogs.append(wizard)
    wizard.created.connect(lambda _sid: window.project_changed.emit())
    wizard.show()
    return wizard


def open_results(window, study_id: int | None = None):
    from mskstudio.gui.readers.results import ResultsPage

    if not window._need_project():
        return None
    study_id = study_id if study_id is not None else _choose_study(window, "Reader study results")
    if study_id is None:
        return None
    page = ResultsPage(window, study_id)
    window.dialogs.append(page)
    page.show()
    return page

"""Small non-modal dialogs: project info, shortcuts, error with details (import failures:
``import_failures.py``)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)


def _table(rows: list[tuple[str, str]], headers: list[str]) -> QTableWidget:
    t = QTableWidget(len(rows), len(headers))
    t.setHorizontalHeaderLabels(headers)
    t.verticalHeader().setVisible(False)
    t.verticalHeader().setDefaultSectionSize(22)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    t.horizontalHeader().setStretchLastSection(True)
    t.setAlternatingRowColors(True)
    for i, row in enumerate(rows):
        for j, text in enumerate(row):
            t.setItem(i, j, QTableWidgetItem(str(text)))
    return t


class _Dialog(QDialog):
    def __init__(self, parent, title: str, width: int = 520, height: int = 480):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(width, height)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.layout_ = QVBoxLayout(self)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        self.buttons = buttons

    def finish(self) -> _Dialog:
        self.layout_.addWidget(self.buttons)
        self.show()
        return self


def project_info(parent, project) -> _Dialog:
    s = project.summary()
    rows = [(k, v) for k, v in s.items() if not isinstance(v, dict)]
    rows += [(f"label set {k}", v) for k, v in s["label_sets"].items()]
    rows += [(f"jobs {k}", v) for k, v in s["jobs"].items()]
    rows += [("author", project.author)]
    d = _Dialog(parent, f"Project info — {s['name']}")
    d.layout_.addWidget(_table(rows, ["", "Value"]))
    return d.finish()


def shortcuts(parent, entries: list[tuple[str, str, str]]) -> _Dialog:
    """``entries``: (menu, action, shortcut) for every action with a shortcut."""
    d = _Dialog(parent, "Keyboard shortcuts", 560, 620)
    d.layout_.addWidget(QLabel("Every shortcut is also shown next to its menu item."))
    d.table = _table(entries, ["Menu", "Action", "Shortcut"])
    d.layout_.addWidget(d.table)
    return d.finish()


def error(parent, title: str, message: str, details: str = "") -> QMessageBox:
    """A non-modal error box with the full details one click away (never swallowed)."""
    box = QMessageBox(QMessageBox.Icon.Critical, title, message or title,
                      QMessageBox.StandardButton.Close, parent)
    if details and details.strip() != (message or "").strip():
        box.setDetailedText(details)
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setWindowModality(Qt.WindowModality.NonModal)
    box.show()
    return box


def text(parent, title: str, body: str) -> _Dialog:
    d = _Dialog(parent, title, 600, 420)
    edit = QPlainTextEdit(body, readOnly=True)
    d.layout_.addWidget(edit)
    return d.finish()

"""The labs of a patient: a table (value editable in place) and a small form to add one.

Values outside the normal range are marked (↑ high / ↓ low, in orange).  Adding and
deleting go through undoable commands that write the store at once (audited there);
the form checks its input first and says what is wrong in plain words.
"""

from __future__ import annotations

import datetime

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCompleter,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from mskstudio.gui.case.commands import AddLabCommand, DeleteLabCommand
from mskstudio.gui.commands import SetLabCommand
from mskstudio.store.repo_images import check_lab

OUT_OF_RANGE = QColor("#ff8a65")
ERROR_STYLE = "color: #ff6b6b;"
# Labs a musculoskeletal work-up asks for, with a usual unit and adult normal range: typing
# the name fills unit and range where they are still empty (the user can change both).
COMMON_LABS = {
    "ALP": ("U/L", 40, 130), "LDH": ("U/L", 135, 225), "CRP": ("mg/L", 0, 5), "WBC": ("10^9/L", 4, 10),
    "ESR": ("mm/h", 0, 20), "Calcium": ("mmol/L", 2.15, 2.55), "Phosphate": ("mmol/L", 0.8, 1.5),
    "PTH": ("pmol/L", 1.6, 6.9), "Vitamin D": ("nmol/L", 50, 125), "Haemoglobin": ("g/L", 120, 170),
}
COLUMNS = ["Lab", "Value", "Unit", "Normal range", "Date", ""]


def range_flag(value: float | None, low: float | None, high: float | None) -> str:
    if value is None:
        return ""
    if low is not None and value < low:
        return "↓ low"
    if high is not None and value > high:
        return "↑ high"
    return ""


def parse_number(text: str, what: str) -> float | None:
    """A number typed by a person ("4,5" too); empty is None; anything else says what is wrong."""
    text = text.strip().replace(",", ".")
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"The {what} must be a number (e.g. 132 or 4.5), not {text!r}") from None


def _item(text, editable: bool = False) -> QTableWidgetItem:
    it = QTableWidgetItem("" if text is None else str(text))
    if not editable:
        it.setFlags(it.flags() & ~Qt.ItemFlag.ItemIsEditable)
    return it


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:g}"


class LabEditor(QWidget):
    def __init__(self, undo_stack, on_change=None, parent=None):
        super().__init__(parent)
        self.undo_stack, self.on_change = undo_stack, on_change
        self.project, self.patient_id = None, None
        self._loading = False

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setAlternatingRowColors(True)
        self.table.itemChanged.connect(self._value_edited)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._table_menu)
        delete_key = QShortcut(QKeySequence(Qt.Key.Key_Delete), self.table)
        delete_key.setContext(Qt.ShortcutContext.WidgetShortcut)
        delete_key.activated.connect(self.delete_selected)

        self.fields: dict[str, QLineEdit] = {}
        form = QGridLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setHorizontalSpacing(4)
        for col, (key, label, placeholder, width) in enumerate([
            ("name", "Lab", "e.g. ALP", 90), ("value", "Value", "", 60), ("unit", "Unit", "U/L", 60),
            ("low", "Normal low", "", 55), ("high", "Normal high", "", 55), ("date", "Date", "YYYY-MM-DD", 90),
        ]):
            edit = QLineEdit()
            edit.setPlaceholderText(placeholder)
            edit.setMinimumWidth(width)
            edit.returnPressed.connect(self.add_from_form)
            self.fields[key] = edit
            caption = QLabel(label)
            caption.setObjectName("fieldCaption")
            form.addWidget(caption, 0, col)
            form.addWidget(edit, 1, col)
        names = QCompleter(sorted(COMMON_LABS))
        names.setCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.fields["name"].setCompleter(names)
        self.fields["name"].editingFinished.connect(self._fill_known_lab)
        self.fields["date"].setText(datetime.date.today().isoformat())
        self.add_button = QPushButton("Add lab")
        self.add_button.clicked.connect(self.add_from_form)
        self.delete_button = QPushButton("Delete lab")
        self.delete_button.setEnabled(False)
        self.delete_button.clicked.connect(self.delete_selected)
        self.message = QLabel("")
        self.message.setStyleSheet(ERROR_STYLE)
        self.message.setWordWrap(True)

        buttons = QHBoxLayout()
        buttons.addWidget(self.add_button)
        buttons.addWidget(self.delete_button)
        buttons.addWidget(self.message, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.table, 1)
        layout.addLayout(form)
        layout.addLayout(buttons)

    # ---- showing ------------------------------------------------------------------------------
    def show_labs(self, project, patient_id: int | None) -> None:
        self.project, self.patient_id = project, patient_id
        labs = project.images.labs(patient_id) if project is not None and patient_id is not None else []
        self._loading = True
        try:
            self.table.setRowCount(0)
            for lab in labs:
                self._add_row(dict(lab))
        finally:
            self._loading = False
        self._selection_changed()

    def _add_row(self, lab: dict) -> None:
        i = self.table.rowCount()
        self.table.insertRow(i)
        lo, hi, v = lab["ref_low"], lab["ref_high"], lab["value"]
        flag = range_flag(v, lo, hi)
        taken_on = lab.get("taken_on")  # absent on a read-only project older than schema 2
        cells = [_item(lab["name"]), _item(_fmt(v), editable=True), _item(lab["unit"]),
                 _item(f"{_fmt(lo)}–{_fmt(hi)}" if lo is not None or hi is not None else ""),
                 _item(taken_on), _item(flag)]
        for c, it in enumerate(cells):
            if flag and c in (1, 5):
                it.setForeground(QBrush(OUT_OF_RANGE))
            self.table.setItem(i, c, it)

    def selected_name(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        return self.table.item(rows[0].row(), 0).text() if rows else None

    def _selection_changed(self) -> None:
        self.delete_button.setEnabled(self.selected_name() is not None and self._writable())

    def _writable(self) -> bool:
        return self.project is not None and not self.project.readonly and self.patient_id is not None

    # ---- edits (ask → command → do) ------------------------------------------------------------
    def _value_edited(self, item: QTableWidgetItem) -> None:
        if self._loading or self.patient_id is None or item.column() != 1:
            return
        name = self.table.item(item.row(), 0).text()
        try:
            value = parse_number(item.text(), f"{name} value")
        except ValueError as exc:
            self.message.setText(str(exc))
            self.show_labs(self.project, self.patient_id)
            return
        self.message.setText("")
        self.undo_stack.push(SetLabCommand(self.project, self.patient_id, name, value, on_change=self._changed))

    def _fill_known_lab(self) -> None:
        name = self.fields["name"].text().strip()
        known = next((v for k, v in COMMON_LABS.items() if k.lower() == name.lower()), None)
        if known is None:
            return
        for key, default in zip(("unit", "low", "high"), known, strict=True):
            if not self.fields[key].text().strip():
                self.fields[key].setText(_fmt(default) if isinstance(default, (int, float)) else default)

    def form_values(self) -> tuple[str, dict]:
        """(name, fields) from the form, or ValueError saying what to correct."""
        f = {k: w.text() for k, w in self.fields.items()}
        value = parse_number(f["value"], "value")
        low, high = parse_number(f["low"], "normal low"), parse_number(f["high"], "normal high")
        name = check_lab(f["name"], value, low, high, f["date"].strip() or None)
        if value is None:
            raise ValueError(f"Type the {name} value (a number)")
        return name, {"value": value, "unit": f["unit"].strip() or None, "ref_low": low, "ref_high": high,
                      "taken_on": f["date"].strip() or None}

    def add_from_form(self) -> bool:
        if not self._writable():
            self.message.setText("The project is open read-only" if self.project is not None else "No patient")
            return False
        try:
            name, fields = self.form_values()
        except ValueError as exc:
            self.message.setText(str(exc))
            return False
        cmd = AddLabCommand(self.project, self.patient_id, name, fields, on_change=self._changed)
        self.undo_stack.push(cmd)
        if cmd.error is not None:
            self.message.setText(str(cmd.error))
            return False
        self.message.setText("")
        for key in ("name", "value", "unit", "low", "high"):
            self.fields[key].clear()
        return True

    def delete_selected(self) -> None:
        name = self.selected_name()
        if name is None or not self._writable():
            return
        cmd = DeleteLabCommand(self.project, self.patient_id, name, on_change=self._changed)
        self.undo_stack.push(cmd)
        self.message.setText("" if cmd.error is None else str(cmd.error))

    def _table_menu(self, pos) -> None:
        row = self.table.rowAt(pos.y())
        if row < 0:
            return
        self.table.selectRow(row)
        menu = QMenu(self)
        action = menu.addAction(f"Delete lab {self.table.item(row, 0).text()}", self.delete_selected)
        action.setEnabled(self._writable())
        menu.exec(self.table.viewport().mapToGlobal(pos))

    def _changed(self) -> None:
        if self.on_change:
            self.on_change()

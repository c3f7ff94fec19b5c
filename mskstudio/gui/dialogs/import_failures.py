"""The files an import skipped, as a table a person can read: file, reason, a filter, CSV export.

Shown when an import job ends (with the job's summary line, the same sentence the CLI prints,
``io.importer.summary_line``) and from Jobs › Import failures… for every import of the project.
It replaces the result dict that was shown as raw JSON.
"""

from __future__ import annotations

import csv
from pathlib import Path

from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableView,
    QVBoxLayout,
)

COLUMNS = ("File", "Reason", "Job")


def result_line(kind: str, result) -> str:
    """The summary of an import job's result in words (never the raw dict)."""
    if not isinstance(result, dict):
        return str(result)
    if kind == "import":
        from mskstudio.io.importer import summary_line

        return summary_line(result)
    if kind == "import-clinical":
        return (f"{result.get('imported', 0)} of {result.get('rows', 0)} rows imported, "
                f"{result.get('n_bad_rows', 0)} bad rows"
                + (f"; unknown columns ignored: {', '.join(result['unknown_columns'])}"
                   if result.get("unknown_columns") else ""))
    return ", ".join(f"{k} {v}" for k, v in result.items() if isinstance(v, (int, float, str)))


class ImportFailuresDialog(QDialog):
    """``failures``: rows with path, reason and job_id (``project.jobs.failures``)."""

    def __init__(self, parent, title: str, failures, summary: str = ""):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(760, 480)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.summary = QLabel(summary)
        self.summary.setWordWrap(True)
        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels(list(COLUMNS))
        for f in failures:
            row = [QStandardItem(str(f["path"])), QStandardItem(str(f["reason"])),
                   QStandardItem(str(f["job_id"]))]
            for item in row:
                item.setToolTip(item.text())
            self.model.appendRow(row)
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.proxy.setFilterKeyColumn(-1)  # file or reason
        self.filter = QLineEdit(placeholderText="Filter by file or reason…")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._filter)
        self.count = QLabel()
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.export_btn = QPushButton("Export CSV…")
        self.export_btn.clicked.connect(self.ask_export)
        top = QHBoxLayout()
        top.addWidget(self.filter, 1)
        top.addWidget(self.count)
        top.addWidget(self.export_btn)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addLayout(top)
        layout.addWidget(self.table, 1)
        layout.addWidget(buttons)
        self._filter("")
        self.show()

    def _filter(self, text: str) -> None:
        self.proxy.setFilterFixedString(text)
        shown, total = self.proxy.rowCount(), self.model.rowCount()
        self.count.setText(f"{total} skipped file(s)" if shown == total else f"{shown} of {total} shown")

    def shown_rows(self) -> list[tuple[str, str, str]]:
        return [tuple(self.proxy.index(r, c).data() for c in range(len(COLUMNS)))
                for r in range(self.proxy.rowCount())]

    def export_csv(self, path: str | Path) -> int:
        """Write the rows shown (after the filter) to ``path``; returns how many."""
        rows = self.shown_rows()
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "reason", "job"])
            w.writerows(rows)
        return len(rows)

    def ask_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export skipped files", "import_failures.csv",
                                              "CSV files (*.csv)")
        if path:
            self.export_csv(path)


IMPORT_KINDS = {"import": "Import DICOM", "import-clinical": "Import clinical CSV"}


def show_import_failures(window, job_id: int | None = None, *, kind: str = "import", result=None):
    """The skipped files of one import job (with its summary) or of every import of the project."""
    failures = window.project.jobs.failures(job_id)
    title = (f"{IMPORT_KINDS.get(kind, kind)} — job {job_id}" if job_id is not None
             else "Import failures — every import of this project")
    summary = result_line(kind, result) if result is not None else f"{len(failures)} file(s) skipped"
    d = ImportFailuresDialog(window, title, failures, summary)
    window.dialogs.append(d)
    return d

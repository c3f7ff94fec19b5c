"""Reader study results: progress per reader and arm, then the analysis (run as the
``reader-study-analyze`` job through the window's runner) as tables and figures."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pandas as pd
from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

TABLES = (("performance", "Accuracy · sensitivity · specificity"), ("cohen_kappa", "Cohen's κ"),
          ("fleiss_kappa", "Fleiss' κ"), ("mcnemar_vs_model", "Readers vs model"), ("cochran_q", "Cochran's Q"),
          ("arm_differences", "Arms compared"), ("reading_times", "Reading time"),
          ("read_box_scores", "Boxes vs reference"), ("read_box_iou_summary", "Box IoU between readers"))
FIGURES = (("roc_readers.png", "ROC + readers"), ("accuracy.png", "Accuracy"), ("reading_time.png", "Time"))


class ResultsPage(QWidget):
    def __init__(self, window, study_id: int):
        super().__init__(None, Qt.WindowType.Window)
        self.window_, self.study_id = window, study_id
        project = window.project
        study = project.readers.study(study_id)
        self.setWindowTitle(f"Reader study — {study['name']}")
        self.job_id: int | None = None
        self.progress = QTableWidget()
        self.status = QLabel(wordWrap=True)
        self.analyze_button = QPushButton("Analyze")
        self.analyze_button.clicked.connect(self.analyze)
        self.tabs = QTabWidget()
        top = QHBoxLayout()
        top.addWidget(self.analyze_button)
        top.addWidget(self.status, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.progress, 1)
        layout.addWidget(self.tabs, 3)
        window.runner.job_returned.connect(self._returned)
        self.show_progress()
        self.resize(1100, 800)

    def show_progress(self) -> None:
        rows = self.window_.project.readers.progress(self.study_id)
        frame = pd.DataFrame([{"reader": r["name"], "role": r["role"] or "", "arm": f"{r['position'] + 1} {r['kind']}",
                               "read": f"{r['done']}/{r['n']}",
                               "minutes": round((r["seconds"] or 0) / 60.0, 1)} for r in rows])
        fill_table(self.progress, frame)

    def analyze(self) -> None:
        self.analyze_button.setEnabled(False)
        self.status.setText("Analysing (bootstrap intervals take a few seconds)…")
        self.job_id = self.window_.runner.submit("reader-study-analyze", {"study": self.study_id})

    def _returned(self, job_id: int, result) -> None:
        if job_id != self.job_id:
            return
        self.analyze_button.setEnabled(True)
        self.show_results(Path(result["out"]))

    def show_results(self, out: Path) -> None:
        self.status.setText(f"Tables (CSV) and figures (PNG, SVG) in {out}")
        self.tabs.clear()
        for name, title in FIGURES:
            path = out / name
            if path.exists():
                label = QLabel(alignment=Qt.AlignmentFlag.AlignCenter)
                label.setPixmap(QPixmap(str(path)))
                scroll = QScrollArea(widgetResizable=True)
                scroll.setWidget(label)
                self.tabs.addTab(scroll, title)
        for name, title in TABLES:
            path = out / f"{name}.csv"
            if path.exists() and path.stat().st_size > 1:
                try:
                    frame = pd.read_csv(path)
                except pd.errors.EmptyDataError:
                    continue
                table = QTableWidget()
                fill_table(table, frame)
                self.tabs.addTab(table, title)

    def closeEvent(self, event) -> None:
        with contextlib.suppress(RuntimeError, TypeError):
            self.window_.runner.job_returned.disconnect(self._returned)
        super().closeEvent(event)


def fill_table(table: QTableWidget, frame: pd.DataFrame) -> None:
    table.clear()
    table.setRowCount(len(frame))
    table.setColumnCount(len(frame.columns))
    table.setHorizontalHeaderLabels([str(c) for c in frame.columns])
    for i, row in enumerate(frame.itertuples(index=False)):
        for j, value in enumerate(row):
            text = f"{value:.3f}" if isinstance(value, float) else str(value)
            item = QTableWidgetItem("" if text == "nan" else text)
            item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
            table.setItem(i, j, item)
    table.resizeColumnsToContents()

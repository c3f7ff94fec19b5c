"""The "Lesions" dock: a detector's predicted boxes on the main viewer, with their confidence,
a threshold slider, accept (-> a human box, audited) and reject (-> dismissed); and
"Model › Find lesions…", which submits the ``detect`` job over the project.

Predicted boxes are drawn as dashed orange rectangles on the viewer's canvas (full-resolution
image pixels, so they follow zoom, rotation and flips), apart from the human boxes the viewer's
own box layer shows.  Reads one image's predictions from the store per image change (a
milliseconds query), never runs a network on the GUI thread.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QColor, QPen
from PySide6.QtWidgets import (
    QComboBox,
    QGraphicsRectItem,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

COLOR = "#ff9f1c"


class DetectionsDock(QWidget):
    def __init__(self, window):
        super().__init__()
        self.window = window
        self.items: list = []
        self.run_combo = QComboBox()
        self.run_combo.currentIndexChanged.connect(lambda _i: self.refresh())
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 100)
        self.slider.setValue(30)
        self.slider.valueChanged.connect(lambda _v: self.refresh())
        self.slider_label = QLabel()
        self.list = QListWidget()
        self.list.currentRowChanged.connect(lambda _r: self._highlight())
        self.accept_btn = QPushButton("Accept box")
        self.accept_btn.setToolTip("The selected prediction becomes your box (audited)")
        self.reject_btn = QPushButton("Reject")
        self.reject_btn.setToolTip("Dismiss the selected prediction")
        self.find_btn = QPushButton("Find lesions…")
        self.accept_btn.clicked.connect(self.accept_selected)
        self.reject_btn.clicked.connect(self.reject_selected)
        self.find_btn.clicked.connect(lambda: find_lesions(window))
        self.status = QLabel("No detector predictions yet: Model › Find lesions…")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Detector run"))
        layout.addWidget(self.run_combo)
        row = QHBoxLayout()
        row.addWidget(QLabel("Confidence ≥"))
        row.addWidget(self.slider, 1)
        row.addWidget(self.slider_label)
        layout.addLayout(row)
        layout.addWidget(self.list, 1)
        buttons = QHBoxLayout()
        for b in (self.accept_btn, self.reject_btn, self.find_btn):
            buttons.addWidget(b)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        window.project_changed.connect(self.reload_runs)
        window.image_changed.connect(lambda _i: self.refresh())
        window.runner.job_returned.connect(self._job_returned)
        self.reload_runs()

    # ---- data ------------------------------------------------------------------------------
    @property
    def run_id(self) -> int | None:
        data = self.run_combo.currentData()
        return int(data) if data is not None else None

    @property
    def threshold(self) -> float:
        return self.slider.value() / 100.0

    def reload_runs(self) -> None:
        p = getattr(self.window, "project", None)
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        if p is not None:
            for run_id in reversed(p.detections.runs_with_predictions()):
                row = p.models.get(run_id)
                self.run_combo.addItem(f"#{run_id} {row['name'] if row else ''}", run_id)
        self.run_combo.blockSignals(False)
        self.refresh()

    def predictions(self) -> list:
        p = getattr(self.window, "project", None)
        image_id = getattr(self.window, "image_id", None)
        if p is None or image_id is None or self.run_id is None:
            return []
        return p.detections.predictions(image_id, run_id=self.run_id, min_score=self.threshold)

    # ---- drawing ---------------------------------------------------------------------------
    def clear_items(self) -> None:
        for item in self.items:
            item.setParentItem(None)
            if item.scene() is not None:
                item.scene().removeItem(item)
        self.items = []

    def refresh(self) -> None:
        self.slider_label.setText(f"{self.threshold:.2f}")
        self.clear_items()
        self.list.clear()
        rows = self.predictions()
        canvas = self.window.viewer.canvas
        for r in rows:
            rect = QGraphicsRectItem(r.x0, r.y0, r.x1 - r.x0, r.y1 - r.y0, canvas)
            pen = QPen(QColor(COLOR), 2, Qt.PenStyle.DashLine)
            pen.setCosmetic(True)
            rect.setPen(pen)
            rect.setZValue(60)
            text = pg.TextItem(f"{r.score:.2f}", color=QColor(COLOR), anchor=(0, 1),
                               fill=pg.mkBrush(0, 0, 0, 170))
            text.setParentItem(rect)
            text.setPos(r.x0, r.y0)
            self.items.append(rect)
            item = QListWidgetItem(f"{r.score:.2f}  box {int(r.x1 - r.x0)}×{int(r.y1 - r.y0)} px")
            item.setData(Qt.ItemDataRole.UserRole, int(r.id))
            self.list.addItem(item)
        if rows:
            self.list.setCurrentRow(0)
        has = bool(rows)
        self.accept_btn.setEnabled(has)
        self.reject_btn.setEnabled(has)
        if self.run_id is not None:
            self.status.setText(f"{len(rows)} predicted box(es) at confidence ≥ {self.threshold:.2f}")

    def _highlight(self) -> None:
        row = self.list.currentRow()
        for k, rect in enumerate(self.items):
            pen = rect.pen()
            pen.setWidth(4 if k == row else 2)
            rect.setPen(pen)

    def _selected_box(self) -> int | None:
        item = self.list.currentItem()
        return None if item is None else int(item.data(Qt.ItemDataRole.UserRole))

    # ---- actions ---------------------------------------------------------------------------
    def accept_selected(self) -> int | None:
        box_id = self._selected_box()
        if box_id is None:
            return None
        new_id = self.window.project.detections.accept(box_id)
        self._human_boxes_changed()
        self.refresh()
        return new_id

    def reject_selected(self) -> None:
        box_id = self._selected_box()
        if box_id is not None:
            self.window.project.detections.dismiss(box_id)
            self.refresh()

    def _human_boxes_changed(self) -> None:
        """Let the viewer show the new human box (re-open the image: the one redraw path)."""
        image_id = getattr(self.window, "image_id", None)
        if image_id is not None and hasattr(self.window, "open_image"):
            self.window.open_image(image_id)

    def _job_returned(self, _job_id: int, result) -> None:
        if isinstance(result, dict) and "boxes" in result and "images_with_boxes" in result:
            self.reload_runs()


def find_lesions(window) -> int | None:
    """Submit ``detect`` with the latest finished detector run over the whole project."""
    if not window._need_project():
        return None
    from mskstudio.ml.detect.predict import latest_detector

    run_id = latest_detector(window.project)
    if run_id is None:
        window.show_error("No detector", "Train a lesion detector first (mskstudio train-det).")
        return None
    return window.runner.submit("detect", {"model_run_id": run_id})


def add_detect_menu(window) -> None:
    """"Find lesions…" in the Model menu; the Lesions dock tabbed behind the Annotate dock."""
    menu = next((a.menu() for a in window.menuBar().actions() if a.text().replace("&", "") == "Model"), None)
    if menu is None:
        menu = window.menuBar().addMenu("&Model")
    if menu is not None:
        action = QAction("Find &lesions…", window)
        action.triggered.connect(lambda _checked=False: find_lesions(window))
        menu.addSeparator()
        menu.addAction(action)
        getattr(window, "actions_by_name", {})["find_lesions"] = action
    docks = getattr(window, "docks", {})
    if "Lesions" in docks and "Annotate" in docks:
        window.tabifyDockWidget(docks["Annotate"], docks["Lesions"])
        docks["Annotate"].raise_()

"""The Dashboard's "Errors" tab: galleries of a run's false positives, false negatives, most
confident wrong cases and (with a reader study) cases the model got right while most readers
did not.

The cases come from ``ml.evaluate.errors`` (Qt-free, shared with the study report); each
thumbnail is the image's stored thumbnail with the cached Grad-CAM of the predicted class
laid over it when ``explain`` has made one (nothing is computed here).  Clicking a thumbnail
opens the case in the Viewer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QIcon, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QVBoxLayout,
    QWidget,
)

from mskstudio.ml.evaluate import errors as err

if TYPE_CHECKING:
    from mskstudio.gui.window_contract import ViewWindow

GALLERIES = (("False positives", "fp"), ("False negatives", "fn"), ("Wrong, most confident", "wrong"),
             ("Model right, most readers wrong", "readers"))
LIMIT = 48      # cases per gallery
ICON_BATCH = 8  # thumbnails (about 1.5 ms each with a heatmap) drawn per event-loop turn
THUMB = 128


def _overlay(base: QImage, heat: np.ndarray) -> QImage:
    from mskstudio.gui.review.case_panels import heat_rgba

    rgba = np.ascontiguousarray(heat_rgba(heat))
    h, w = rgba.shape[:2]
    layer = QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).scaled(
        base.size(), Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation)
    out = base.convertToFormat(QImage.Format.Format_ARGB32)
    painter = QPainter(out)
    painter.setOpacity(0.6)
    painter.drawImage(0, 0, layer)
    painter.end()
    return out


class ErrorsView(QWidget):
    def __init__(self, window, parent=None):
        super().__init__(parent)
        self.window_: ViewWindow = window
        self.run_id: int | None = None
        self.rep: dict[str, Any] = {}
        self.classes: list[str] = []
        self.shown: list[err.ErrorCase] = []
        self.pending_icons: list[int] = []  # rows of self.shown whose thumbnail is not drawn yet
        self.dirty = False  # thumbnails are drawn when the tab is shown, not on every Dashboard refresh

        self.kind = QComboBox()
        for text, key in GALLERIES:
            self.kind.addItem(text, key)
        self.positive = QComboBox()
        self.positive.setToolTip("The class the false positives and negatives are counted for (one-vs-rest)")
        self.study = QComboBox()
        self.study.setToolTip("The reader study whose first arm (without the model) is compared")
        self.heat = QCheckBox("Grad-CAM")
        self.heat.setChecked(True)
        self.heat.setToolTip("Lay the cached Grad-CAM of the predicted class over each thumbnail "
                             "(Model › Explain makes them)")
        for c in (self.kind, self.positive, self.study):
            c.currentIndexChanged.connect(lambda _i: self.refresh())
        self.heat.toggled.connect(lambda _on: self.refresh())
        self.class_label, self.study_label = QLabel("class"), QLabel("study")
        row = QHBoxLayout()
        for w in (QLabel("Show"), self.kind, self.class_label, self.positive, self.study_label, self.study,
                  self.heat):
            row.addWidget(w)
        row.addStretch(1)
        self.title = QLabel()
        self.title.setWordWrap(True)
        self.gallery = QListWidget()
        self.gallery.setViewMode(QListView.ViewMode.IconMode)
        self.gallery.setResizeMode(QListView.ResizeMode.Adjust)
        self.gallery.setMovement(QListView.Movement.Static)
        self.gallery.setIconSize(QSize(THUMB, THUMB))
        self.gallery.setGridSize(QSize(THUMB + 40, THUMB + 64))
        self.gallery.setWordWrap(True)
        self.gallery.itemClicked.connect(self._open)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.title)
        layout.addWidget(self.gallery, 1)

    @property
    def project(self):
        return self.window_.project

    def show_run(self, run_id: int | None, rep: dict[str, Any], classes: list[str], what: str = "hold-out") -> None:
        """Called by the Dashboard whenever run A or its test set changes."""
        self.run_id, self.rep, self.classes, self.what = run_id, rep, list(classes), what
        keep = self.positive.currentText()
        self.positive.blockSignals(True)
        self.positive.clear()
        self.positive.addItems(self.classes)
        i = self.positive.findText(keep)
        self.positive.setCurrentIndex(i if i >= 0 else (1 if len(self.classes) == 2 else 0))
        self.positive.blockSignals(False)
        keep_study = self.study.currentData()
        self.study.blockSignals(True)
        self.study.clear()
        for s in self.project.readers.studies() if self.project is not None else []:
            self.study.addItem(f"#{s['id']} {s['name']}", int(s["id"]))
        self.study.setCurrentIndex(max(self.study.findData(keep_study), 0))
        self.study.blockSignals(False)
        if self.isVisible():
            self.refresh()
        else:
            self.dirty = True

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if self.dirty:
            self.refresh()

    def cases(self) -> list[err.ErrorCase]:
        kind = self.kind.currentData()
        if not self.classes or not self.rep.get("probs"):
            return []
        reads = []
        if kind == "readers" and self.study.currentData() is not None:
            reads = self.project.readers.reads(int(self.study.currentData()))
        positive = self.positive.currentText() if kind in ("fp", "fn") else None
        return err.gallery(kind, self.rep, self.classes, positive=positive, reads=reads, limit=LIMIT)

    def refresh(self) -> None:
        self.dirty = False
        kind = self.kind.currentData()
        for w in (self.class_label, self.positive):
            w.setVisible(kind in ("fp", "fn"))
        for w in (self.study_label, self.study):
            w.setVisible(kind == "readers")
        self.gallery.clear()
        self.shown = self.cases()
        for case in self.shown:
            self.gallery.addItem(self._item(case))
        self.title.setText(self._title())
        # text at once, thumbnails a few per event-loop turn: the GUI thread never waits ~50 ms
        self.pending_icons = list(range(len(self.shown)))
        QTimer.singleShot(0, self, self._draw_some_icons)

    def _draw_some_icons(self) -> None:
        batch, self.pending_icons = self.pending_icons[:ICON_BATCH], self.pending_icons[ICON_BATCH:]
        for k in batch:
            self.gallery.item(k).setIcon(self._icon(self.shown[k]))
        if self.pending_icons:
            QTimer.singleShot(0, self, self._draw_some_icons)

    def finish_icons(self) -> None:
        """Draw every thumbnail still pending now (tests, screenshots)."""
        while self.pending_icons:
            self._draw_some_icons()

    def _title(self) -> str:
        kind, what = self.kind.currentData(), getattr(self, "what", "hold-out")
        if self.run_id is None:
            return "No classifier run selected."
        if not self.rep.get("probs"):
            return f"The {what} report of run #{self.run_id} has no per-case probabilities."
        if kind == "readers" and self.study.count() == 0:
            return "No reader study in this project (Readers menu): nothing to compare with."
        n = len(self.shown)
        more = f" (the first {LIMIT})" if n == LIMIT else ""
        text = {"fp": f"predicted {self.positive.currentText()}, truth another class; highest "
                      f"P({self.positive.currentText()}) first",
                "fn": f"truth {self.positive.currentText()}, predicted another class; lowest "
                      f"P({self.positive.currentText()}) first",
                "wrong": "misclassified, most confident first",
                "readers": "model right while most readers (first arm, without the model) were wrong"}[kind]
        return (f"<b>{n} case(s){more}</b> of run #{self.run_id}'s {what} (n = {self.rep.get('n', '?')}): "
                f"{text}. Click a case to open it in the Viewer.")

    def _icon(self, case: err.ErrorCase) -> QIcon:
        png = self.project.images.thumbnail(case.image_id) if self.project is not None else None
        image = QImage.fromData(png) if png else QImage()
        if image.isNull():
            image = QImage(THUMB, THUMB, QImage.Format.Format_ARGB32)
            image.fill(Qt.GlobalColor.darkGray)
        if self.heat.isChecked() and self.run_id is not None:
            from mskstudio.gui.review.review_queue import cached_cam

            heat = cached_cam(self.project, self.run_id, case.image_id)
            if heat is not None and heat.ndim == 2 and heat.size:
                image = _overlay(image, heat)
        return QIcon(QPixmap.fromImage(image))

    def _item(self, case: err.ErrorCase) -> QListWidgetItem:
        p = f"P={case.p_predicted:.2f}" if case.p_class is None \
            else f"P({self.positive.currentText()})={case.p_class:.2f}"
        text = f"#{case.image_id} {p}\n{case.truth} → {case.predicted}" + (f"\n{case.note}" if case.note else "")
        item = QListWidgetItem(text)
        item.setData(Qt.ItemDataRole.UserRole, case.image_id)
        tip = (f"image #{case.image_id}\ntruth {case.truth}, predicted {case.predicted}\n"
               f"P(predicted) {case.p_predicted:.3f}, P(truth) {case.p_truth:.3f}")
        item.setToolTip(tip + (f"\n{case.note}" if case.note else ""))
        return item

    def shown_ids(self) -> list[int]:
        return [c.image_id for c in self.shown]

    def _open(self, item: QListWidgetItem) -> None:
        self.window_.open_image(int(item.data(Qt.ItemDataRole.UserRole)))
        self.window_.show_in_viewer()

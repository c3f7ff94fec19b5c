"""Similar-cases gallery for the open case: thumbnails of other patients' images.

``Gallery(main_window)`` follows ``main_window.image_changed(int)``; each tile shows
the thumbnail, diagnosis, dignity, distance, study date and centre; clicking opens
that case (``main_window.open_image``).  The majority vote of the k neighbours is
shown with its breakdown.  Embeddings are computed by the ``embed`` job through
``main_window.runner`` (never on the GUI thread); once they exist the query itself
is a fast index lookup.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from mskstudio.gui.widgets.workspace import follow_window

THUMB = 128


class Gallery(QWidget):
    def __init__(self, main_window: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.mw = main_window
        self.image_id: int | None = None
        self.result = None

        self.rep = QComboBox()
        self.rep.setToolTip("representation: a model run's embeddings or raw pixels")
        self.k = QSpinBox()
        self.k.setRange(1, 50)
        self.k.setValue(5)
        self.k.setPrefix("k = ")
        self.compute = QPushButton("Compute embeddings")
        self.compute.setVisible(False)
        self.vote = QLabel("")
        self.vote.setWordWrap(True)
        self.list = QListWidget()
        self.list.setViewMode(QListWidget.ViewMode.IconMode)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.list.setWordWrap(True)
        self.list.setMovement(QListWidget.Movement.Static)

        top = QHBoxLayout()
        top.addWidget(self.rep, 1)
        top.addWidget(self.k)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self.vote)
        lay.addWidget(self.compute)
        lay.addWidget(self.list, 1)

        self.k.valueChanged.connect(lambda _: self.refresh())
        self.rep.currentIndexChanged.connect(lambda _: self.refresh())
        self.list.itemActivated.connect(self._open)
        self.list.itemClicked.connect(self._open)
        self.compute.clicked.connect(self._compute)
        if hasattr(main_window, "image_changed"):
            main_window.image_changed.connect(self.show_image)
        follow_window(main_window, self.reload_runs, on_returned=lambda *_: self.refresh())
        changed = getattr(main_window, "data_changed", None)
        if changed is not None:  # a new model run or new embeddings: offered at once
            changed.connect(lambda subjects: self.reload_runs() if "runs" in subjects else None)

    # ---- state -------------------------------------------------------------------------
    @property
    def project(self):
        return getattr(self.mw, "project", None)

    def current_rep(self) -> int | str:
        data = self.rep.currentData()
        return "pixels" if data is None else data

    def reload_runs(self) -> None:
        """Re-read the runs that can embed (keeping the chosen one), then the results."""
        keep = self.rep.currentData()
        self.rep.blockSignals(True)
        self.rep.clear()
        if self.project is not None:
            for row in self.project.models.list():
                if row["kind"] in ("deepcluster", "classifier", "embedder", "fusion") and row["checkpoint_sha"]:
                    self.rep.addItem(f"{row['name']} (run {row['id']})", int(row["id"]))
        self.rep.addItem("raw pixels (baseline)", "pixels")
        if keep is not None and self.rep.findData(keep) >= 0:
            self.rep.setCurrentIndex(self.rep.findData(keep))
        self.rep.blockSignals(False)
        self.refresh()

    def show_image(self, image_id: int) -> None:
        self.image_id = int(image_id)
        self.refresh()

    def _has_embeddings(self) -> bool:
        from mskstudio.ml.retrieve.embeddings import cache_files

        path, ids, _ = cache_files(self.project, self.current_rep())
        return path.exists() and ids.exists()

    # ---- query -------------------------------------------------------------------------
    def refresh(self) -> None:
        self.list.clear()
        self.result = None
        if self.project is None or self.image_id is None:
            self.vote.setText("Open a case to see similar cases of other patients.")
            self.compute.setVisible(False)
            return
        if not self._has_embeddings():
            self.vote.setText("No embeddings for this representation yet.")
            self.compute.setVisible(True)
            return
        self.compute.setVisible(False)
        from mskstudio.ml.retrieve.similar import similar

        try:
            self.result = similar(self.project, self.current_rep(), self.image_id, self.k.value())
        except Exception as exc:  # noqa: BLE001 - shown, never swallowed
            self.vote.setText(f"Similar cases unavailable: {exc}")
            return
        self._fill()

    def _fill(self) -> None:
        res = self.result
        for h in res.hits:
            png = self.project.images.thumbnail(h.image_id)
            pix = QPixmap()
            if png:
                pix.loadFromData(png)
            text = (f"{h.diagnosis or '—'}\n{h.dignity or '—'}  d={h.distance:.3f}\n"
                    f"{h.study_date or '—'}  {h.centre or '—'}")
            item = QListWidgetItem(QIcon(pix), text)
            item.setData(Qt.ItemDataRole.UserRole, h.image_id)
            item.setToolTip(f"image {h.image_id}, patient {h.pseudonym}")
            self.list.addItem(item)
        v = res.vote
        breakdown = ", ".join(f"{name}: {n}" for name, n in v.counts.items()) or "no diagnoses"
        winner = v.winner or "—"
        self.vote.setText(f"<b>Vote of {v.k}:</b> {winner} ({v.counts.get(v.winner, 0)}/{v.k}) — {breakdown}")

    def _open(self, item: QListWidgetItem) -> None:
        image_id = item.data(Qt.ItemDataRole.UserRole)
        if image_id is not None and hasattr(self.mw, "open_image"):
            self.mw.open_image(int(image_id))

    def _compute(self) -> None:
        runner = getattr(self.mw, "runner", None)
        if runner is not None:
            self.vote.setText("Computing embeddings…")
            self.compute.setVisible(False)
            runner.submit("embed", {"run_id": self.current_rep()})

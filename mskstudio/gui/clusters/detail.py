"""One open cluster: its members as a thumbnail grid, outliers-first or central-first."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from mskstudio.gui.clusters.montage import ThumbCache

ORDERS = (("Outliers first", "outliers"), ("Central first", "central"))
MAX_SHOWN = 500


class ClusterDetail(QWidget):
    image_activated = Signal(int)          # double-click: open in the viewer
    move_out_requested = Signal(list)      # selected image ids
    label_requested = Signal(list)         # selected image ids: give them a human label

    def __init__(self, thumbs: ThumbCache, parent=None):
        super().__init__(parent)
        self.thumbs = thumbs
        self.project = None
        self.cluster_id: int | None = None
        self.title = QLabel("No cluster open")
        self.order = QComboBox()
        for text, key in ORDERS:
            self.order.addItem(text, key)
        self.order.currentIndexChanged.connect(self.reload)
        self.grid = QListWidget()
        self.grid.setViewMode(QListWidget.IconMode)
        self.grid.setIconSize(QSize(96, 96))
        self.grid.setResizeMode(QListWidget.Adjust)
        self.grid.setMovement(QListWidget.Static)
        self.grid.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.grid.itemDoubleClicked.connect(lambda it: self.image_activated.emit(int(it.data(Qt.UserRole))))
        self.move_btn = QPushButton("Move selected out")
        self.move_btn.clicked.connect(lambda: self._emit_selected(self.move_out_requested))
        self.label_btn = QPushButton("Label selected (human)")
        self.label_btn.clicked.connect(lambda: self._emit_selected(self.label_requested))
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.order)
        bottom = QHBoxLayout()
        bottom.addWidget(self.move_btn)
        bottom.addWidget(self.label_btn)
        bottom.addStretch(1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(self.grid, 1)
        lay.addLayout(bottom)

    def selected_ids(self) -> list[int]:
        return [int(it.data(Qt.UserRole)) for it in self.grid.selectedItems()]

    def _emit_selected(self, signal) -> None:
        ids = self.selected_ids()
        if ids:
            signal.emit(ids)

    def show_cluster(self, project, cluster_id: int | None) -> None:
        self.project, self.cluster_id = project, cluster_id
        self.reload()

    def reload(self) -> None:
        self.grid.clear()
        row = self.project.clusters.cluster(self.cluster_id) if (self.project and self.cluster_id) else None
        if row is None or row["merged_into"] is not None:
            self.title.setText("No cluster open")
            self.cluster_id = None
            return
        label = "discarded" if row["discarded"] else (row["class_name"] or "unlabelled")
        self.title.setText(f"Cluster #{row['idx']}: {row['size']} images, spread {row['spread'] or 0:.3f}, "
                           f"{label}")
        members = self.project.clusters.members(self.cluster_id, order=self.order.currentData(),
                                                limit=MAX_SHOWN)
        for m in members:
            it = QListWidgetItem(QIcon(self.thumbs.get(m["image_id"])), f"{m['distance'] or 0:.2f}")
            it.setData(Qt.UserRole, int(m["image_id"]))
            it.setToolTip(f"image {m['image_id']}, distance to centroid {m['distance'] or 0:.3f}")
            self.grid.addItem(it)

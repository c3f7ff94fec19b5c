"""A virtualised thumbnail grid model: ids in memory, thumbnails loaded lazily with an LRU cache.

``data(DecorationRole)`` never touches the database: a miss returns a placeholder and
queues the id; a zero-delay timer loads queued thumbnails (newest requests first, i.e.
what is on screen now) within a small time budget per event-loop turn and announces
them with ``dataChanged``.  With uniform item sizes the view asks only for the visible
rows, so 50 000 images cost one list of ints and a cache of a few thousand pixmaps.

The model is a ``QStringListModel`` (the captions are its strings) so that ``rowCount``
and ``index`` stay in C++: a Python ``rowCount`` is called about four times per item
while the view lays out, 200 000 Python calls (~0.3 s) for a 50 000-image project.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from PySide6.QtCore import QModelIndex, QSize, QStringListModel, Qt, QTimer
from PySide6.QtGui import QColor, QImage, QPixmap

ImageIdRole = Qt.ItemDataRole.UserRole + 1


class ThumbnailModel(QStringListModel):
    def __init__(self, parent=None, *, icon_size: int = 128, cache_size: int = 3000):
        super().__init__(parent)
        self.project = None
        self.ids: list[int] = []
        self.icon_size = icon_size
        self.cache: OrderedDict[int, QPixmap] = OrderedDict()
        self.cache_size = cache_size
        self.budget_s = 0.012
        self._queue: OrderedDict[int, None] = OrderedDict()
        self._row_of: dict[int, int] = {}
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._load_some)
        self.placeholder = QPixmap(icon_size, icon_size)
        self.placeholder.fill(QColor("#1b1f24"))
        self.loaded_count = 0

    def set_project(self, project) -> None:
        self.project = project
        self.cache.clear()
        self.set_items([], [])

    def set_items(self, ids: list[int], captions: list[str]) -> None:
        """Show ``ids`` in this order, with one caption per id."""
        if len(captions) != len(ids):
            raise ValueError("one caption per image id")
        self.ids = list(ids)
        self._row_of = {i: r for r, i in enumerate(self.ids)}
        self._queue.clear()
        self.setStringList(captions)  # resets the model

    def flags(self, index: QModelIndex) -> Qt.ItemFlag:
        # Captions are not editable and nothing is dragged (QStringListModel allows both).
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemNeverHasChildren

    def data(self, index: QModelIndex, role: int = Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        image_id = self.ids[index.row()]
        if role == Qt.ItemDataRole.DecorationRole:
            pix = self.cache.get(image_id)
            if pix is not None:
                self.cache.move_to_end(image_id)
                return pix
            self._queue[image_id] = None
            self._queue.move_to_end(image_id)
            while len(self._queue) > 512:  # scrolled past long ago: forget
                self._queue.popitem(last=False)
            if not self._timer.isActive():
                self._timer.start()
            return self.placeholder
        if role == Qt.ItemDataRole.DisplayRole:
            return super().data(index, role)
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"image {image_id}  {super().data(index, Qt.ItemDataRole.DisplayRole)}"
        if role == ImageIdRole:
            return image_id
        if role == Qt.ItemDataRole.SizeHintRole:
            return QSize(self.icon_size + 12, self.icon_size + 30)
        return None

    def row_of(self, image_id: int) -> int | None:
        return self._row_of.get(image_id)

    def pixmap(self, image_id: int) -> QPixmap | None:
        """Load one thumbnail now (cache first)."""
        pix = self.cache.get(image_id)
        if pix is not None:
            return pix
        png = self.project.images.thumbnail(image_id) if self.project is not None else None
        img = QImage.fromData(png) if png else QImage()
        if img.isNull():
            pix = self.placeholder
        else:
            pix = QPixmap.fromImage(img.scaled(self.icon_size, self.icon_size,
                                               Qt.AspectRatioMode.KeepAspectRatio,
                                               Qt.TransformationMode.SmoothTransformation))
        self.cache[image_id] = pix
        self.loaded_count += 1
        while len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return pix

    def _load_some(self) -> None:
        deadline = time.perf_counter() + self.budget_s
        done: list[int] = []
        while self._queue and time.perf_counter() < deadline:
            image_id, _ = self._queue.popitem(last=True)  # most recently asked = visible now
            if image_id in self._row_of:
                self.pixmap(image_id)
                done.append(self._row_of[image_id])
        if done:
            lo, hi = min(done), max(done)
            self.dataChanged.emit(self.index(lo), self.index(hi), [Qt.ItemDataRole.DecorationRole])
        if self._queue:
            self._timer.start()

    def pending(self) -> int:
        return len(self._queue)

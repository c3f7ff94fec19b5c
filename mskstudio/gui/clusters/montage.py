"""Thumbnails and montages for the cluster board (PNG bytes from the store -> pixmaps)."""

from __future__ import annotations

from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPixmap

TILE = 64


class ThumbCache:
    """image id -> QPixmap of its stored thumbnail (grey placeholder when missing)."""

    def __init__(self, project=None, limit: int = 4000):
        self.project, self.limit = project, limit
        self._pix: dict[int, QPixmap] = {}

    def set_project(self, project) -> None:
        self.project = project
        self._pix.clear()

    def get(self, image_id: int) -> QPixmap:
        pix = self._pix.get(image_id)
        if pix is None:
            pix = QPixmap()
            data = self.project.images.thumbnail(image_id) if self.project else None
            if not data or not pix.loadFromData(data):
                pix = QPixmap(TILE, TILE)
                pix.fill(QColor("#333"))
            if len(self._pix) >= self.limit:
                self._pix.clear()
            self._pix[image_id] = pix
        return pix


def montage(thumbs: ThumbCache, image_ids: list[int], *, side: int = 2, tile: int = TILE,
            caption: str = "", color: str | None = None, discarded: bool = False) -> QPixmap:
    """A side x side grid of the given (most central) members, caption below, class colour frame."""
    w = side * tile
    out = QPixmap(w, w + 18)
    out.fill(QColor("#1e1e1e"))
    p = QPainter(out)
    for n, image_id in enumerate(image_ids[: side * side]):
        src = thumbs.get(image_id).scaled(tile, tile, Qt.KeepAspectRatio, Qt.SmoothTransformation)
        x, y = (n % side) * tile, (n // side) * tile
        p.drawPixmap(x + (tile - src.width()) // 2, y + (tile - src.height()) // 2, src)
    if discarded:
        p.fillRect(QRect(0, 0, w, w), QColor(0, 0, 0, 150))
    if color:
        pen = p.pen()
        pen.setColor(QColor(color))
        pen.setWidth(4)
        p.setPen(pen)
        p.drawRect(2, 2, w - 4, w - 4)
    p.setPen(QColor("#ddd"))
    font = QFont()
    font.setPointSize(8)
    p.setFont(font)
    p.drawText(QRect(0, w, w, 18), Qt.AlignCenter, caption)
    p.end()
    return out

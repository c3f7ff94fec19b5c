"""Decoding radiographs off the GUI thread; only the newest request is ever delivered."""

from __future__ import annotations

import traceback

import numpy as np
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QImage


def png_to_gray(png: bytes) -> np.ndarray | None:
    """An 8-bit grey array from thumbnail PNG bytes (None if it does not decode)."""
    img = QImage.fromData(png)
    if img.isNull():
        return None
    img = img.convertToFormat(QImage.Format.Format_Grayscale8)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    arr = np.frombuffer(img.constBits(), dtype=np.uint8, count=h * bpl).reshape(h, bpl)[:, :w]
    return arr.copy()


class _Signals(QObject):
    done = Signal(int, int, object)      # generation, image id, Radiograph
    failed = Signal(int, int, str, str)  # generation, image id, message, details


class _DecodeTask(QRunnable):
    def __init__(self, loader: ImageLoader, generation: int, image_id: int, path, frame: int):
        super().__init__()
        self.loader, self.gen, self.image_id = loader, generation, image_id
        self.path, self.frame = path, frame

    def run(self) -> None:
        if self.gen != self.loader.generation:
            return  # the user moved on before this started: skip the work
        try:
            from ...io.dicom import read_radiograph

            rad = read_radiograph(self.path, frame=self.frame)
        except Exception as exc:  # noqa: BLE001 - reported to the GUI, never swallowed
            self.loader.signals.failed.emit(self.gen, self.image_id, str(exc), traceback.format_exc())
            return
        self.loader.signals.done.emit(self.gen, self.image_id, rad)


class ImageLoader:
    """``request(image_id, path, frame)``; ``signals.done``/``failed`` arrive for the latest only."""

    def __init__(self):
        self.pool = QThreadPool()
        self.pool.setMaxThreadCount(1)
        self.signals = _Signals()
        self.generation = 0

    def request(self, image_id: int, path, frame: int = 0) -> int:
        self.generation += 1
        self.pool.start(_DecodeTask(self, self.generation, image_id, path, frame))
        return self.generation

    def is_current(self, generation: int) -> bool:
        return generation == self.generation

    def wait(self, ms: int = 30000) -> bool:
        return self.pool.waitForDone(ms)

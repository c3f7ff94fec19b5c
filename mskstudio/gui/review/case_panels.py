"""Pieces of the case review board that draw one case: the class-probability bars and
the Grad-CAM colouring (``heat_rgba``, also used by the dashboard's error galleries)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QGridLayout, QGroupBox, QLabel, QProgressBar

if TYPE_CHECKING:
    from mskstudio.gui.review import review_queue as rq

CMAPS = ("inferno", "viridis", "magma", "plasma", "turbo")


def heat_rgba(heat: np.ndarray, cmap: str = "inferno") -> np.ndarray:
    """HxW map in [0, 1] -> HxWx4 uint8; weak values fade out so the anatomy stays visible."""
    try:
        lut = pg.colormap.get(cmap).getLookupTable(0.0, 1.0, 256, alpha=True)
    except Exception:  # noqa: BLE001 - unknown colormap: fall back to the default
        lut = pg.colormap.get("inferno").getLookupTable(0.0, 1.0, 256, alpha=True)
    h = np.clip(np.nan_to_num(np.asarray(heat, np.float32)), 0.0, 1.0)
    rgba = np.asarray(lut, np.uint8)[(h * 255).astype(np.int32)].copy()
    rgba[..., 3] = (255 * np.clip(h / 0.35, 0.0, 1.0)).astype(np.uint8)
    return rgba


class ProbabilityBars(QGroupBox):
    """One bar per class of the run, with its number key; the predicted class in bold."""

    def __init__(self, parent=None):
        super().__init__("Probabilities (key = class)", parent)
        self.grid = QGridLayout(self)
        self.bars: list[tuple[QLabel, QProgressBar]] = []

    def show_case(self, classes: list, case: rq.Case | None) -> None:
        while len(self.bars) < len(classes):
            name, bar = QLabel(), QProgressBar()
            bar.setRange(0, 1000)
            bar.setTextVisible(True)
            r = len(self.bars)
            self.grid.addWidget(name, r, 0)
            self.grid.addWidget(bar, r, 1)
            self.bars.append((name, bar))
        for k, (name, bar) in enumerate(self.bars):
            visible = k < len(classes)
            name.setVisible(visible)
            bar.setVisible(visible)
            if not visible:
                continue
            c = classes[k]
            p = case.probs.get(c.id, 0.0) if case else 0.0
            key = f"{k + 1}  " if k < 9 else "    "
            bold = case is not None and c.id == case.pred
            name.setText(f"<b>{key}{c.name}</b>" if bold else f"{key}{c.name}")
            bar.setValue(int(round(p * 1000)))
            bar.setFormat(f"{p:.3f}")
            bar.setStyleSheet(f"QProgressBar::chunk {{ background: {c.color}; }}")

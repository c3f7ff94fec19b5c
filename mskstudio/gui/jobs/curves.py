"""Live per-epoch curves of the job selected in the Jobs dock.

Jobs report metrics through ``ctx.metric(name, value, step)``; the job runner stores each
in ``job_metrics`` before the GUI hears of it, so the plot re-reads the selected job's
metrics whenever one arrives (a few per epoch) and shows finished jobs the same way.
Names like ``fold0/val_loss`` are one quantity (``val_loss``) with one line per prefix.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from mskstudio.gui.widgets.plots import PALETTE, epoch_plot

# The quantity shown first when a job has it: the one that says whether training works.
PREFERRED = ("val_loss", "loss", "val_dice", "val_iou", "nmi_consecutive")


def series_by_quantity(metrics: dict[str, list[tuple[int, float]]]) -> dict[str, dict[str, list]]:
    """quantity -> line name -> [(step, value)], from ``project.jobs.metrics(job_id)``."""
    out: dict[str, dict[str, list]] = {}
    for name, points in sorted(metrics.items()):
        line, _, quantity = name.rpartition("/")
        out.setdefault(quantity, {})[line or quantity] = list(points)
    return out


def default_quantity(quantities) -> str | None:
    quantities = list(quantities)
    return next((q for q in PREFERRED if q in quantities), quantities[0] if quantities else None)


class JobCurves(QWidget):
    """A quantity chooser over a plot; ``show_job(project, job_id)`` to (re)draw."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.series: dict[str, dict[str, list]] = {}
        self.quantity = QComboBox()
        self.quantity.setToolTip("Which of the job's per-epoch figures to plot")
        self.quantity.currentIndexChanged.connect(lambda _i: self._draw())
        self.plot, self.legend = epoch_plot()
        row = QHBoxLayout()
        row.addWidget(QLabel("Curve"))
        row.addWidget(self.quantity, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.plot, 1)

    def show_job(self, project, job_id: int | None) -> bool:
        """Redraw for ``job_id``; False (and nothing drawn) when it has no metrics."""
        metrics = project.jobs.metrics(job_id) if project is not None and job_id is not None else {}
        self.series = series_by_quantity(metrics)
        keep = self.quantity.currentText()
        self.quantity.blockSignals(True)
        self.quantity.clear()
        self.quantity.addItems(list(self.series))
        pick = keep if keep in self.series else default_quantity(self.series)
        if pick is not None:
            self.quantity.setCurrentText(pick)
        self.quantity.blockSignals(False)
        self._draw()
        return bool(self.series)

    def _draw(self) -> None:
        self.plot.clear()
        self.legend.clear()
        lines = self.series.get(self.quantity.currentText()) or {}
        for k, (name, points) in enumerate(lines.items()):
            color = PALETTE[k % len(PALETTE)]
            # steps are 0-based epochs; people count epochs from 1
            self.plot.plot([s + 1 for s, _ in points], [v for _, v in points],
                           pen=pg.mkPen(color, width=2), symbol="o", symbolSize=5, symbolBrush=color,
                           name=name if len(lines) > 1 else None)
        self.plot.setLabel("left", self.quantity.currentText().replace("_", " "))

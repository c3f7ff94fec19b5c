"""What the per-epoch plots share: the dashboard's learning curves and the Jobs dock's."""

from __future__ import annotations

import pyqtgraph as pg

# One colour per fold (or per run), in a fixed order so fold 0 is the same blue everywhere.
PALETTE = ("#4363d8", "#e6194b", "#3cb44b", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
           "#9a6324", "#469990")


def epoch_plot(title: str | None = None) -> tuple[pg.PlotWidget, pg.LegendItem]:
    """A plot over epochs with a grid and a top-right legend."""
    plot = pg.PlotWidget(title=title)
    plot.setLabel("bottom", "epoch")
    # Losses and accuracies near 0.6 were relabelled 600 "(x0.001)" by pyqtgraph's SI prefix.
    plot.getAxis("left").enableAutoSIPrefix(False)
    plot.showGrid(x=True, y=True, alpha=0.2)
    legend = plot.addLegend(offset=(-10, 10), labelTextSize="8pt", brush=pg.mkBrush(20, 20, 20, 170))
    return plot, legend

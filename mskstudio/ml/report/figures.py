"""The report's figures, drawn with matplotlib's Agg canvas (no pyplot, no Qt, thread-safe).

Each function writes one file (SVG or PNG by suffix) and returns its path.  SVGs are
written without a date and with a fixed hash salt, so the same numbers give the same bytes.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
STYLES = ("-", "--", ":", "-.")


@contextlib.contextmanager
def figure(width: float, height: float):
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"svg.hashsalt": "mskstudio-report", "svg.fonttype": "none",
                                "font.size": 9}):
        fig = Figure(figsize=(width, height), dpi=100)
        FigureCanvasAgg(fig)
        yield fig


def save(fig, path: str | Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    if path.suffix.lower() == ".svg":
        fig.savefig(path, metadata={"Date": None})
    else:
        fig.savefig(path, metadata={"Software": None})
    return path


def roc_figure(curves: Sequence[tuple[str, np.ndarray, np.ndarray, float]], path: str | Path,
               title: str = "") -> Path:
    """curves = [(label, fpr, tpr, auc)]; the diagonal is chance."""
    with figure(5.0, 4.6) as fig:
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls=":")
        for k, (label, fpr, tpr, auc) in enumerate(curves):
            ax.plot(fpr, tpr, color=COLOURS[k % len(COLOURS)], ls=STYLES[(k // len(COLOURS)) % len(STYLES)],
                    lw=1.6, label=f"{label} (AUC {auc:.3f})")
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_xlabel("1 − specificity")
        ax.set_ylabel("sensitivity")
        ax.set_aspect("equal")
        if title:
            ax.set_title(title, fontsize=10)
        if curves:
            ax.legend(loc="lower right", fontsize=7)
        return save(fig, path)


def reliability_figure(series: Sequence[tuple[str, Mapping[str, Any]]], path: str | Path,
                       title: str = "") -> Path:
    """series = [(label, reliability dict)]: accuracy against confidence per bin, sized by n."""
    with figure(5.0, 4.6) as fig:
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls=":", label="perfect calibration")
        for k, (label, rel) in enumerate(series):
            bins = [b for b in rel["bins"] if b["n"]]
            x = [b["confidence"] for b in bins]
            y = [b["accuracy"] for b in bins]
            sizes = [12 + 60 * b["n"] / max(rel["n"], 1) for b in bins]
            colour = COLOURS[k % len(COLOURS)]
            ax.plot(x, y, color=colour, lw=1.2)
            ax.scatter(x, y, s=sizes, color=colour, label=label, zorder=3)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (top class)")
        ax.set_ylabel("accuracy")
        ax.set_aspect("equal")
        if title:
            ax.set_title(title, fontsize=10)
        ax.legend(loc="upper left", fontsize=7)
        return save(fig, path)


def forest_figure(rows: Sequence[Mapping[str, Any]], path: str | Path, *, metric: str = "auc",
                  overall: float | None = None, title: str = "") -> Path:
    """One CI bar per subgroup (rows from ``subgroups.subgroup_rows``), overall as a dashed line."""
    from mskstudio.ml.evaluate.subgroups import GROUPINGS

    rows = [r for r in rows if not math.isnan(r[metric].get("value", math.nan))]
    with figure(7.5, 1.2 + 0.28 * max(len(rows), 1)) as fig:
        ax = fig.add_subplot()
        ticks, labels = [], []
        for k, r in enumerate(rows):
            y = len(rows) - k
            v = r[metric]["value"]
            lo, hi = r[metric].get("ci") or [math.nan, math.nan]
            if lo is not None and not math.isnan(lo):
                ax.plot([lo, hi], [y, y], color="#1f4e79", lw=1.6)
            ax.plot([v], [y], "s", color="#1f4e79", ms=4 + min(6.0, math.sqrt(r["n"]) / 2))
            ticks.append(y)
            labels.append(f"{GROUPINGS.get(r['grouping'], r['grouping'])}: {r['group']} (n={r['n']})")
        if overall is not None and not math.isnan(overall):
            ax.axvline(overall, color="#999", ls="--", lw=1)
        ax.set_yticks(ticks, labels, fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_xlabel({"auc": "AUC (95% CI)", "accuracy": "accuracy (95% CI)"}.get(metric, metric))
        if title:
            ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        return save(fig, path)


def cam_figure(image: np.ndarray, cam: np.ndarray, path: str | Path, title: str = "") -> Path:
    """A radiograph (display-scaled by percentiles) with its heatmap over it."""
    from scipy.ndimage import zoom

    img = np.asarray(image, float)
    if img.ndim == 3:
        img = img[..., 0]
    lo, hi = np.percentile(img, [1, 99])
    img = np.clip((img - lo) / max(hi - lo, 1e-6), 0, 1)
    cam = np.asarray(cam, float)
    if cam.shape != img.shape:
        cam = zoom(cam, (img.shape[0] / cam.shape[0], img.shape[1] / cam.shape[1]), order=1)
    with figure(3.0, 3.2) as fig:
        ax = fig.add_subplot()
        ax.imshow(img, cmap="gray")
        ax.imshow(cam, cmap="jet", alpha=0.35)
        ax.axis("off")
        if title:
            ax.set_title(title, fontsize=8)
        return save(fig, path)

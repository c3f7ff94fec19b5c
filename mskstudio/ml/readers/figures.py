"""Reader-study figures (matplotlib Figures without pyplot, drawn with Agg when saved):
ROC with reader points, accuracy with CIs, reading time per case.  Each is written as
PNG and SVG; ``figure_*`` functions return the matplotlib Figure so the GUI page can show the same drawing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MARKERS = "osD^v<>p*h"


def figure_roc(result: dict[str, Any]):
    import matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 5), dpi=110)
    ax = fig.add_subplot(111)
    roc = result.get("roc")
    if roc:
        ax.plot(roc["fpr"], roc["tpr"], color="#333333", lw=1.8,
                label=f"model (AUC {roc['auc']:.3f}, n={roc['n']})")
    perf = result["tables"]["performance"]
    readers = perf[perf["level"] == "reader"]
    arms = sorted(readers["arm_position"].unique())
    colours = {}
    cmap = matplotlib.colormaps["tab10"]
    for k, arm in enumerate(arms):
        part = readers[readers["arm_position"] == arm]
        for _, r in part.iterrows():
            colour = colours.setdefault(r["who"], cmap(len(colours) % 10))
            ax.scatter(1 - r["specificity"], r["sensitivity"], marker=MARKERS[k % len(MARKERS)], color=colour,
                       s=46, zorder=3, label=f"{r['who']} ({r['arm']})")
    ax.plot([0, 1], [0, 1], ls=":", color="#999999", lw=1)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    positive = result["summary"]["positive"]
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel(f"sensitivity ({positive})")
    ax.set_title("Readers on the model's ROC curve")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def figure_accuracy(result: dict[str, Any]):
    from matplotlib.figure import Figure

    perf = result["tables"]["performance"]
    rows = perf.sort_values(["arm_position", "level", "who"]).reset_index(drop=True)
    fig = Figure(figsize=(6.5, 0.32 * max(len(rows), 4) + 1.2), dpi=110)
    ax = fig.add_subplot(111)
    y = list(range(len(rows)))[::-1]
    colours = {"reader": "#4363d8", "group": "#3cb44b", "model": "#e6194b"}
    for yy, (_, r) in zip(y, rows.iterrows(), strict=True):
        ax.errorbar(r["accuracy"], yy, xerr=[[r["accuracy"] - r["accuracy_lo"]], [r["accuracy_hi"] - r["accuracy"]]],
                    fmt="o", color=colours.get(r["level"], "#333333"), capsize=3)
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r['who']} · {r['arm']} (n={r['n']})" for _, r in rows.iterrows()], fontsize=7)
    ax.set_xlim(0, 1.02)
    ax.set_xlabel("accuracy (Wilson 95% CI)")
    ax.set_title("Accuracy per reader, group and model")
    fig.tight_layout()
    return fig


def figure_times(result: dict[str, Any]):
    from matplotlib.figure import Figure

    reads = result["tables"]["reads"].dropna(subset=["seconds"])
    groups = sorted(reads.groupby(["reader", "arm_position"]), key=lambda t: t[0])
    fig = Figure(figsize=(6.5, 3.6), dpi=110)
    ax = fig.add_subplot(111)
    if groups:
        ax.boxplot([g["seconds"].to_numpy() for _, g in groups], showfliers=True)
        ax.set_xticks(range(1, len(groups) + 1))
        ax.set_xticklabels([f"{r}\narm {a + 1}" for (r, a), _ in groups], fontsize=7)
    ax.set_ylabel("seconds per case")
    ax.set_title("Reading time per case")
    fig.tight_layout()
    return fig


def write_figures(result: dict[str, Any], out: Path) -> list[Path]:
    written = []
    for name, make in (("roc_readers", figure_roc), ("accuracy", figure_accuracy), ("reading_time", figure_times)):
        fig = make(result)
        for ext in ("png", "svg"):
            path = Path(out) / f"{name}.{ext}"
            fig.savefig(path)
            written.append(path)
    return written

"""The selection flow (STARD / CLAIM style): from every file found to the images analysed.

``selection_flow(project, run)`` counts, from the project itself: files found (imported
+ failed), imported, failed by reason (``import_failures``), in discarded clusters,
excluded (the ``excluded`` flag, broken down by burned-in annotation, screenshot, quality
or the user's choice), labelled
in the run's label set, analysed (the run's split: development folds and hold-out).
``flow_svg(flow)`` draws it as a small SVG by hand (graphviz is not a dependency):
main boxes down the left, the exclusions to the right of the arrow they leave.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

BOX_W, BOX_H, SIDE_W, GAP = 300, 46, 330, 34


def selection_flow(project, run_row=None, cluster_run_id: int | None = None) -> dict[str, Any]:
    counts = project.cohort.selection_counts(cluster_run_id)
    imported = counts["imported"]
    failures = counts["failures"]
    n_failed = sum(n for _r, n in failures)
    all_ids = set(project.images.ids(include_excluded=True))
    discarded = counts["discarded"] & all_ids
    remaining = all_ids - discarded
    # excluded images, by the first flag that explains them (an image counts once)
    excluded = counts["excluded"] & remaining
    flagged_by: list[tuple[str, int]] = []
    explained: set[int] = set()
    for name, ids in counts["flags"].items():
        new = (ids & excluded) - explained
        if new:
            flagged_by.append((name, len(new)))
        explained |= new
    if excluded - explained:
        flagged_by.append(("by the user", len(excluded - explained)))
    remaining -= excluded
    steps: list[dict[str, Any]] = [
        {"label": "files found", "n": imported + n_failed, "out": []},
        {"label": "imported", "n": imported,
         "out": [("failed: " + reason, n) for reason, n in failures]},
        {"label": "kept after cluster review", "n": imported - len(discarded),
         "out": [("in discarded clusters", len(discarded))] if discarded else []},
        {"label": "eligible", "n": len(remaining), "out": [("excluded: " + k, n) for k, n in flagged_by]},
    ]
    flow: dict[str, Any] = {"steps": steps, "cluster_run_id": counts["cluster_run_id"]}
    if run_row is not None and run_row["label_set_id"] is not None:
        labelled = set(project.labels.effective(int(run_row["label_set_id"])))
        n_lab = len(labelled & remaining)
        steps.append({"label": f"labelled ({project.labels.label_set_name(int(run_row['label_set_id']))})",
                      "n": n_lab, "out": [("not labelled", len(remaining) - n_lab)]})
        split = json.loads(run_row["split"]) if run_row["split"] else None
        if split:
            dev = {i for f in split["folds"] for i in f["val"]}
            test = set(split["test"])
            external = {c: set(v) for c, v in (split.get("external") or {}).items()}
            analysed = dev | test | {i for v in external.values() for i in v}
            unused = len((labelled & remaining) - analysed)
            steps.append({"label": "analysed", "n": len(analysed),
                          "out": [("labelled, not in the run's split", unused)] if unused else [],
                          "parts": [("development (cross-validation)", len(dev)),
                                    (f"hold-out ({split.get('holdout', 'random')})", len(test)),
                                    *[(f"external test ({c})", len(v)) for c, v in sorted(external.items())]]})
    return flow


def _box(x: float, y: float, w: float, h: float, text: list[str], *, fill: str = "#f4f7fb") -> str:
    """A rounded box with centred lines, one <text> per line (tspan positioning varies by viewer)."""
    first = y + h / 2 - 8 * (len(text) - 1) + 5
    lines = "".join(f'<text x="{x + w / 2:.0f}" y="{first + 16 * k:.0f}" text-anchor="middle" '
                    f'font-size="13">{escape(t)}</text>' for k, t in enumerate(text))
    return (f'<rect x="{x:.0f}" y="{y:.0f}" width="{w:.0f}" height="{h:.0f}" rx="4" fill="{fill}" '
            f'stroke="#1f4e79"/>{lines}')


def _short(text: str, limit: int = 42) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"  # long failure reasons: CSV has them whole


def _arrow(x1: float, y1: float, x2: float, y2: float) -> str:
    return (f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" stroke="#1f4e79" '
            f'marker-end="url(#a)"/>')


def flow_svg(flow: dict[str, Any]) -> str:
    """The flow as an SVG document (deterministic: same counts, same bytes)."""
    parts, y = [], 10.0
    x_main, x_side = 10.0, 10.0 + BOX_W + 60
    centre = x_main + BOX_W / 2
    steps = flow["steps"]
    for k, step in enumerate(steps):
        parts.append(_box(x_main, y, BOX_W, BOX_H, [step["label"], f"n = {step['n']:,}"]))
        y += BOX_H
        if step.get("parts"):
            top = y + GAP
            half = max(140.0, (BOX_W - 10) / 2)  # 2 parts under the main box, more to its right
            for j, (label, n) in enumerate(step["parts"]):
                px = x_main + j * (half + 10)
                head, _, tail = label.partition(" (")
                text = [t for t in (head, f"({tail}" if tail else "", f"n = {n:,}") if t]
                parts.append(_arrow(centre, y, px + half / 2, top))
                parts.append(_box(px, top, half, BOX_H + 14, text, fill="#eef6ee"))
            y = top + BOX_H + 14
        if k + 1 < len(steps):
            outs = steps[k + 1]["out"]  # what leaves between this step and the next
            side_h = max(BOX_H, 16 * len(outs) + 16) if outs else 0
            seg = GAP + side_h
            parts.append(_arrow(centre, y, centre, y + seg))
            if outs:
                mid = y + GAP / 2 + side_h / 2
                parts.append(f'<line x1="{centre:.0f}" y1="{mid:.0f}" x2="{x_side:.0f}" y2="{mid:.0f}" '
                             f'stroke="#1f4e79" marker-end="url(#a)"/>')
                parts.append(_box(x_side, y + GAP / 2, SIDE_W, side_h,
                                  [f"{_short(lab)}: {n:,}" for lab, n in outs], fill="#fbf1f1"))
            y += seg
    height = y + 10
    n_parts = max((len(s_.get("parts", [])) for s_ in steps), default=0)
    width = max(x_side + SIDE_W + 10, x_main + n_parts * (max(140.0, (BOX_W - 10) / 2) + 10) + 10)
    defs = ('<defs><marker id="a" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#1f4e79"/></marker></defs>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif">{defs}{"".join(parts)}</svg>\n')


def flow_rows(flow: dict[str, Any]) -> list[list[Any]]:
    """The same counts as a table (CSV)."""
    rows: list[list[Any]] = [["step", "n", "left out", "n left out"]]
    for step in flow["steps"]:
        for label, n in step["out"]:  # left out on the way to this step
            rows.append(["", "", label, n])
        rows.append([step["label"], step["n"], "", ""])
        for label, n in step.get("parts", []):
            rows.append(["  " + label, n, "", ""])
    return rows

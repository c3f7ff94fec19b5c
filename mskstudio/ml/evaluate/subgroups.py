"""Results per subgroup: any stored attribute as a grouping, with n and 95% CIs per group.

``GROUPINGS`` names the groupings (centre, age band, sex, device manufacturer / model,
lesion size by median split, site, view, body part, diagnosis source); ``group_of``
turns an image's attributes (``project.cohort.attributes()``) into its group.
``subgroup_rows(rep, attributes, grouping)`` scores one report (hold-out or out-of-fold,
which keep ``image_ids``/``y_true``/``probs``) per group: accuracy with its Wilson CI
and the AUC with its DeLong CI (binary: the positive class; more classes: the macro
one-vs-rest AUC with a percentile bootstrap CI, as DeLong has no macro form).
The study report draws them as a forest plot (``ml/report/figures.forest_figure``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mskstudio.ml.evaluate.compare import auc_ci
from mskstudio.ml.evaluate.metrics import bootstrap_auc, proportion

GROUPINGS: dict[str, str] = {
    "centre": "centre", "age": "age band", "sex": "sex", "manufacturer": "device manufacturer",
    "model": "device model", "lesion_size": "lesion size (longest diameter)", "site": "site",
    "view": "view", "body_part": "body part", "diagnosis_source": "diagnosis source",
}
MIN_GROUP = 1  # groups are listed from one case on; their CIs say how little that is


def _median_lesion(attributes: Mapping[int, Mapping[str, Any]], ids: Sequence[int]) -> float | None:
    sizes = [attributes[i].get("lesion_mm") for i in ids if i in attributes]
    sizes = [float(s) for s in sizes if s is not None]
    return float(np.median(sizes)) if sizes else None


def group_of(grouping: str, attrs: Mapping[str, Any] | None, *, median_mm: float | None = None) -> str | None:
    """The group of one image (None = unknown, left out of that grouping)."""
    if attrs is None:
        return None
    if grouping == "age":
        age = attrs.get("age_years")
        return None if age is None else ("< 18 y" if float(age) < 18 else "≥ 18 y")
    if grouping == "lesion_size":
        mm = attrs.get("lesion_mm")
        if mm is None or median_mm is None:
            return None
        return f"≤ {median_mm:.0f} mm" if float(mm) <= median_mm else f"> {median_mm:.0f} mm"
    value = attrs.get(grouping)
    if value is None or value == "":
        return None
    return str(value)


def _score(y: np.ndarray, probs: np.ndarray, n_classes: int, *, n_boot: int, seed: int) -> dict[str, Any]:
    acc = proportion(int((probs.argmax(1) == y).sum()), len(y))
    if n_classes == 2:
        auc = auc_ci((y == 1).astype(int), probs[:, 1])
    else:
        auc = bootstrap_auc(y, probs, n_boot=n_boot, seed=seed)["macro"] if len(y) >= 2 else \
            {"value": math.nan, "ci": [math.nan, math.nan], "n": len(y)}
    return {"n": int(len(y)), "accuracy": acc, "auc": auc}


def subgroup_rows(rep: Mapping[str, Any], attributes: Mapping[int, Mapping[str, Any]], grouping: str, *,
                  n_boot: int = 200, seed: int = 0) -> list[dict[str, Any]]:
    """One dict per group (sorted by name), then 'unknown' when some images have no value."""
    if grouping not in GROUPINGS:
        raise ValueError(f"unknown grouping {grouping!r}; known: {', '.join(GROUPINGS)}")
    ids, y_true, probs = rep.get("image_ids"), rep.get("y_true"), rep.get("probs")
    if not ids or y_true is None or not probs:
        return []
    y = np.asarray(y_true, int)
    p = np.asarray(probs, float)
    median_mm = _median_lesion(attributes, ids) if grouping == "lesion_size" else None
    groups = np.array([group_of(grouping, attributes.get(int(i)), median_mm=median_mm) or "" for i in ids],
                      dtype=object)
    rows = []
    for name in sorted({g for g in groups if g}) + ([""] if (groups == "").any() else []):
        sel = groups == name
        if sel.sum() < MIN_GROUP:
            continue
        rows.append({"grouping": grouping, "group": name or "unknown",
                     **_score(y[sel], p[sel], p.shape[1], n_boot=n_boot, seed=seed)})
    return rows


def all_subgroups(rep: Mapping[str, Any], attributes: Mapping[int, Mapping[str, Any]], *,
                  groupings: Sequence[str] = tuple(GROUPINGS), n_boot: int = 200,
                  seed: int = 0) -> list[dict[str, Any]]:
    """Every grouping with at least two known groups (one group is no comparison)."""
    out = []
    for g in groupings:
        rows = subgroup_rows(rep, attributes, g, n_boot=n_boot, seed=seed)
        if len([r for r in rows if r["group"] != "unknown"]) >= 2:
            out += rows
    return out


def _fmt(prop: Mapping[str, Any]) -> str:
    v = prop.get("value", math.nan)
    lo, hi = prop.get("ci") or [math.nan, math.nan]
    if v is None or math.isnan(v):
        return "n/a"
    if lo is None or math.isnan(lo):
        return f"{v:.3f}"
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def subgroup_table(rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """Rows for a CSV / HTML table (header first)."""
    table: list[list[Any]] = [["grouping", "group", "n", "accuracy [95% CI]", "AUC [95% CI]"]]
    for r in rows:
        table.append([GROUPINGS.get(r["grouping"], r["grouping"]), r["group"], r["n"],
                      _fmt(r["accuracy"]), _fmt(r["auc"])])
    return table

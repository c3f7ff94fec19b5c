"""The cohort table (STROBE "Table 1"): who is in each group, and whether the groups differ.

``cohort_table(attributes, group_of)``: one column per group (a class, a test set …)
plus the whole cohort.  Categorical variables as n (%) with Pearson's χ² test of the
levels × groups table; continuous ones as mean ± SD when every group passes the
Shapiro–Wilk test (p ≥ 0.05, n ≥ 3), then one-way ANOVA, else median (IQR) and the
Kruskal–Wallis test (all scipy.stats).  Patient-level variables (age, sex, site,
centre, diagnosis source) count each patient once per group; image-level ones (device,
view, lesion size) count images.  Missing values are counted, never imputed, and are
left out of the test.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

# (key, label, kind, unit): unit "patient" counts each patient once per group
VARIABLES: tuple[tuple[str, str, str, str], ...] = (
    ("age_years", "age (years)", "continuous", "patient"),
    ("sex", "sex", "categorical", "patient"),
    ("centre", "centre", "categorical", "patient"),
    ("site", "site", "categorical", "patient"),
    ("diagnosis_source", "diagnosis source", "categorical", "patient"),
    ("manufacturer", "device manufacturer", "categorical", "image"),
    ("view", "view", "categorical", "image"),
    ("body_part", "body part", "categorical", "image"),
    ("lesion_mm", "lesion longest diameter (mm)", "continuous", "image"),
)
ALPHA_NORMAL = 0.05


def _units(ids: Sequence[int], attributes: Mapping[int, Mapping[str, Any]], unit: str) -> list[int]:
    """The images standing for the units of one group: all, or the first image of each patient."""
    if unit == "image":
        return list(ids)
    seen, out = set(), []
    for i in ids:
        pid = attributes[i].get("patient_id")
        if pid not in seen:
            seen.add(pid)
            out.append(i)
    return out


def _fmt_p(p: float) -> str:
    if p is None or math.isnan(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _summary(v: np.ndarray, normal: bool) -> str:
    if not len(v):
        return "–"
    if normal:
        return f"{v.mean():.1f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.1f}"
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return f"{med:.1f} ({q1:.1f}–{q3:.1f})"


def _continuous(values_by_group: list[np.ndarray]) -> tuple[list[str], str, float, bool]:
    from scipy import stats

    normal = True
    for v in values_by_group:
        if len(v) < 3 or np.ptp(v) == 0 or stats.shapiro(v).pvalue < ALPHA_NORMAL:
            normal = False
    cells = [_summary(v, normal) for v in values_by_group]
    testable = [v for v in values_by_group if len(v) >= 2]
    if len(testable) < 2 or np.ptp(np.concatenate(testable)) == 0:
        return cells, "–", math.nan, normal
    if normal:
        return cells, "ANOVA", float(stats.f_oneway(*testable).pvalue), normal
    return cells, "Kruskal–Wallis", float(stats.kruskal(*testable).pvalue), normal


def _categorical(values_by_group: list[list[str]]) -> tuple[list[str], list[list[str]], str, float]:
    from scipy.stats import chi2_contingency

    levels = sorted({v for vs in values_by_group for v in vs})
    counts = np.array([[vs.count(level) for vs in values_by_group] for level in levels])
    cells = []
    for li in range(len(levels)):
        row = []
        for g, vs in enumerate(values_by_group):
            n = len(vs)
            row.append(f"{counts[li, g]} ({100 * counts[li, g] / n:.1f}%)" if n else "–")
        cells.append(row)
    table = counts[:, counts.sum(0) > 0]
    table = table[table.sum(1) > 0]
    if table.shape[0] < 2 or table.shape[1] < 2:
        return levels, cells, "–", math.nan
    return levels, cells, "χ²", float(chi2_contingency(table, correction=False).pvalue)


def cohort_table(attributes: Mapping[int, Mapping[str, Any]], group_of: Mapping[int, str] | Callable,
                 *, group_order: Sequence[str] | None = None,
                 variables: Sequence[tuple[str, str, str, str]] = VARIABLES) -> dict[str, Any]:
    """Rows of the cohort table; ``group_of`` maps image id -> group (ids not in it are left out)."""
    get = group_of if callable(group_of) else group_of.get
    by_group: dict[str, list[int]] = {}
    for i in sorted(attributes):
        g = get(i)
        if g is not None:
            by_group.setdefault(str(g), []).append(i)
    groups = list(group_order) if group_order else sorted(by_group)
    groups = [g for g in groups if g in by_group]
    columns = [*groups, "all"]
    members = [by_group[g] for g in groups] + [[i for g in groups for i in by_group[g]]]
    rows: list[dict[str, Any]] = [
        {"variable": "patients", "level": "", "cells": [str(len(_units(m, attributes, "patient")))
                                                        for m in members], "test": "", "p": math.nan},
        {"variable": "images", "level": "", "cells": [str(len(m)) for m in members], "test": "", "p": math.nan},
    ]
    for key, label, kind, unit in variables:
        units = [_units(m, attributes, unit) for m in members]
        raw = [[attributes[i].get(key) for i in u] for u in units]
        known = [[v for v in vs if v is not None and v != ""] for vs in raw]
        if not any(known[:-1]):
            continue
        missing = [len(r) - len(k) for r, k in zip(raw, known, strict=True)]
        if kind == "continuous":
            arrays = [np.asarray(k, float) for k in known]
            cells, test, p, normal = _continuous(arrays[:-1])
            all_cell = _summary(arrays[-1], normal)  # the whole cohort in the groups' form
            summary = "mean ± SD" if normal else "median (IQR)"
            rows.append({"variable": f"{label}, {summary}", "level": "", "cells": [*cells, all_cell],
                         "test": test, "p": p, "unit": unit})
        else:
            strs = [[str(v) for v in k] for k in known]
            levels, cells, test, p = _categorical(strs[:-1])
            _l, all_cells, _t, _p = _categorical([strs[-1]])
            all_by_level = dict(zip(_l, (c[0] for c in all_cells), strict=True))
            for li, level in enumerate(levels):
                rows.append({"variable": f"{label}, n (%)" if li == 0 else "", "level": level,
                             "cells": [*cells[li], all_by_level.get(level, "0")],
                             "test": test if li == 0 else "", "p": p if li == 0 else math.nan, "unit": unit})
        if any(missing):
            rows.append({"variable": "", "level": "missing", "cells": [str(m) for m in missing],
                         "test": "", "p": math.nan, "unit": unit})
    return {"columns": columns, "rows": rows}


def cohort_rows(table: Mapping[str, Any]) -> list[list[Any]]:
    """Header + rows for CSV / HTML."""
    out: list[list[Any]] = [["variable", "level", *table["columns"], "test", "p"]]
    for r in table["rows"]:
        out.append([r["variable"], r["level"], *r["cells"], r["test"],
                    "" if r["test"] in ("", "–") else _fmt_p(r["p"])])
    return out

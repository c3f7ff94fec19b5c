"""The clinical feature table: one row per image, from the patient's clinical record and labs.

Fields are named ``age``, ``sex``, ``site``, ``position`` and ``lab:NAME`` (any lab the
project holds, e.g. ``lab:ALP``).  ``clinical_table`` reads the raw values; a
``ClinicalEncoder`` fitted on the TRAINING rows only turns them into model columns:

* a lab is divided by the upper limit of its own row's reference range
  (``value / ref_high``, "times the upper limit of normal", the clinical convention for
  ALP, LDH, CRP): every centre's kit (its unit and calibration) becomes one scale,
  so µkat/L and U/L rows are never mixed raw.  The raw value stays in the table;
* ``age`` is used as is (years);
* a categorical field becomes one-hot columns ``field=value`` over the values seen in
  training (an unseen value gives all zeros);
* every field has a ``field:missing`` indicator (1 where the value is missing);
* missing numbers are imputed with the training rows' median (``impute=False`` leaves
  NaN for learners that handle it, such as HistGradientBoosting).  The rule is
  ``encoder.rule()``, recorded with every run.

A row is never dropped: an image without a clinical record gets every field missing.
A lab value without a reference range, or one unit meaning two scales (the same unit
whose ranges differ more than fivefold between centres), is a ``ValueError`` naming
the lab and the centre.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mskstudio.store import Project

BASE_FIELDS = ("age", "sex", "site", "position")
CATEGORICAL = ("sex", "site", "position")
NORMALISATION = "value / ref_high (times the upper limit of the row's own reference range)"
RANGE_RATIO_LIMIT = 5.0  # same unit, upper limits further apart than this: a unit mix-up


def available_fields(project: Project) -> list[str]:
    return [*BASE_FIELDS, *(f"lab:{n.upper()}" for n in project.images.lab_names())]


def parse_fields(spec: str | Sequence[str] | None, project: Project | None = None) -> list[str]:
    """'age,sex,lab:ALP' (or a list) -> validated field names; a bad name is a clear error."""
    if spec is None or spec == "":
        raise ValueError("no clinical fields chosen (e.g. --clinical age,sex,lab:ALP)")
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if str(s).strip()]
    known = available_fields(project) if project is not None else None
    out: list[str] = []
    for item in items:
        key = item.lower() if not item.lower().startswith("lab:") else "lab:" + item[4:].strip().upper()
        if key not in BASE_FIELDS and not (key.startswith("lab:") and len(key) > 4):
            raise ValueError(f"clinical field {item!r} is not one of {', '.join(BASE_FIELDS)} or lab:NAME")
        if known is not None and key not in known:
            raise ValueError(f"clinical field {item!r}: the project has no such lab "
                             f"(known: {', '.join(known)})")
        if key not in out:
            out.append(key)
    if not out:
        raise ValueError("no clinical fields chosen (e.g. --clinical age,sex,lab:ALP)")
    return out


@dataclass
class ClinicalTable:
    """Raw clinical values per image row (``None`` = missing), labs with their kit."""

    image_ids: list[int]
    fields: list[str]
    raw: dict[str, list[Any]]                  # field -> value per row (labs: raw value)
    lab_kit: dict[str, list[tuple[Any, Any, Any]]] = field(default_factory=dict)  # lab -> (unit, low, high)
    centres: list[str | None] = field(default_factory=list)

    def numeric(self, name: str) -> np.ndarray:
        """Model scale of a numeric field: age in years, a lab in multiples of its row's ref_high."""
        if name.startswith("lab:"):
            out = np.full(len(self.image_ids), np.nan)
            for i, (v, (_u, _lo, hi)) in enumerate(zip(self.raw[name], self.lab_kit[name], strict=True)):
                if v is not None:
                    out[i] = float(v) / float(hi)
            return out
        return np.asarray([np.nan if v is None else float(v) for v in self.raw[name]], float)

    def describe(self, row: int) -> dict[str, dict[str, Any]]:
        """One case's raw values with units and reference ranges (for SHAP per case)."""
        out: dict[str, dict[str, Any]] = {}
        for f in self.fields:
            entry: dict[str, Any] = {"value": self.raw[f][row]}
            if f.startswith("lab:"):
                unit, lo, hi = self.lab_kit[f][row]
                entry.update(unit=unit, ref_low=lo, ref_high=hi,
                             normalised=None if entry["value"] is None else float(entry["value"]) / float(hi))
            out[f] = entry
        return out


def clinical_table(project: Project, image_ids: Sequence[int], fields: Sequence[str]) -> ClinicalTable:
    fields = parse_fields(list(fields))
    ids = [int(i) for i in image_ids]
    patient_of = project.images.patient_of(ids)
    centre_of = _patient_centres(project)
    clinical = project.images.clinical_records()
    labs: dict[tuple[int, str], Any] = {(int(r["patient_id"]), r["name"].upper()): r
                                        for r in project.images.all_labs()}
    column = {"age": "age_years", "sex": "sex", "site": "site", "position": "position"}
    table = ClinicalTable(ids, fields, {f: [] for f in fields},
                          {f: [] for f in fields if f.startswith("lab:")})
    for image_id in ids:
        pid = patient_of.get(image_id)
        table.centres.append(centre_of.get(pid))
        rec = clinical.get(pid, {})
        for f in fields:
            if f.startswith("lab:"):
                lab = labs.get((pid, f[4:]))
                table.raw[f].append(None if lab is None else lab["value"])
                table.lab_kit[f].append((None, None, None) if lab is None
                                        else (lab["unit"], lab["ref_low"], lab["ref_high"]))
            else:
                v = rec.get(column[f])
                table.raw[f].append(None if v in (None, "") else v)
    check_lab_kits(table)
    return table


def _patient_centres(project: Project) -> dict[int, str | None]:
    """The centre most of a patient's images come from (a lab kit belongs to a centre)."""
    counts: dict[int, Counter] = {}
    for r in project.images.patient_centre_counts():
        counts.setdefault(int(r["patient_id"]), Counter())[r["centre"] or "unknown centre"] += int(r["n"])
    return {p: sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[0][0] for p, c in counts.items()}


def check_lab_kits(table: ClinicalTable) -> None:
    """Every lab value needs its own upper limit; one unit must not mean two scales."""
    for f, kits in table.lab_kit.items():
        highs: dict[str, dict[str, float]] = {}
        for row, (v, (unit, _lo, hi)) in enumerate(zip(table.raw[f], kits, strict=True)):
            if v is None:
                continue
            centre = table.centres[row] or "unknown centre"
            if hi is None or not math.isfinite(float(hi)) or float(hi) <= 0:
                raise ValueError(f"lab {f[4:]} at {centre}: value {v:g}{' ' + unit if unit else ''} has no "
                                 f"reference range (upper limit), so it cannot be normalised; enter the "
                                 f"kit's normal range or leave {f} out")
            highs.setdefault(str(unit or "").strip(), {}).setdefault(centre, float(hi))
        for unit, by_centre in highs.items():
            lo_c, hi_c = min(by_centre, key=by_centre.get), max(by_centre, key=by_centre.get)
            if by_centre[hi_c] > RANGE_RATIO_LIMIT * by_centre[lo_c]:
                raise ValueError(
                    f"lab {f[4:]}: unit {unit or '(none)'!r} at {hi_c} (upper limit {by_centre[hi_c]:g}) "
                    f"contradicts {lo_c} (upper limit {by_centre[lo_c]:g}); check the unit of one centre")


class ClinicalEncoder:
    """Columns of the chosen fields, learned from training rows only (see the module doc)."""

    def __init__(self, impute: bool = True):
        self.impute = impute
        self.medians: dict[str, float] = {}
        self.categories: dict[str, list[str]] = {}
        self.columns: list[str] = []
        self.groups: list[str] = []  # the field each column belongs to

    def fit(self, table: ClinicalTable, rows: Sequence[int]) -> ClinicalEncoder:
        rows = np.asarray(rows, int)
        self.columns, self.groups = [], []
        for f in table.fields:
            if f in CATEGORICAL:
                seen = sorted({str(table.raw[f][r]) for r in rows if table.raw[f][r] is not None})
                self.categories[f] = seen
                cols = [f"{f}={v}" for v in seen]
            else:
                values = table.numeric(f)[rows]
                values = values[~np.isnan(values)]
                self.medians[f] = float(np.median(values)) if len(values) else 0.0
                cols = [f]
            cols.append(f"{f}:missing")
            self.columns += cols
            self.groups += [f] * len(cols)
        return self

    def transform(self, table: ClinicalTable, rows: Sequence[int]) -> np.ndarray:
        rows = np.asarray(rows, int)
        parts = []
        for f in table.fields:
            missing = np.asarray([table.raw[f][r] is None for r in rows], float)
            if f in CATEGORICAL:
                values = [table.raw[f][r] for r in rows]
                onehot = np.asarray([[float(v is not None and str(v) == c) for c in self.categories[f]]
                                     for v in values], float).reshape(len(rows), len(self.categories[f]))
                parts += [onehot, missing[:, None]]
            else:
                x = table.numeric(f)[rows]
                if self.impute:
                    x = np.where(np.isnan(x), self.medians[f], x)
                parts += [x[:, None], missing[:, None]]
        return np.hstack(parts) if parts else np.zeros((len(rows), 0))

    def rule(self) -> dict[str, Any]:
        return {"fitted_on": "training rows only",
                "numeric": ("median of the training rows, plus a missing indicator" if self.impute
                            else "left missing (the learner handles NaN), plus a missing indicator"),
                "categorical": "one-hot over the training values; missing -> all zeros + indicator",
                "lab_normalisation": NORMALISATION,
                "medians": {k: round(v, 5) for k, v in self.medians.items()},
                "categories": self.categories}

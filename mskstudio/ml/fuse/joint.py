"""Joint (end-to-end) fusion: the clinical input of a classifier with a metadata branch.

The classifier trainer (``ml/classify``) takes ``clinical`` fields; this module turns the
clinical table of ml/fuse into the *raw clinical vector* its metadata MLP reads:

* the column layout (the fields, the one-hot categories, a missing indicator per field)
  is fixed once per run from its cross-validation rows (never the hold-out);
* numbers are on the model scale of ``features.py`` (age in years, each lab divided by the
  upper limit of its own row's reference range) and NaN where missing;
* imputation (median), centring and scaling are fitted on each fold's TRAINING rows only
  and live inside each fold model as buffers (``Classifier.fit_clinical``), so the
  checkpoint, predict and the ONNX graph (two inputs: image, clinical) reproduce them.

``spec`` is what a checkpoint and the model card store: fields, columns, categories and
the normalisation rule, enough to rebuild the vector of any image at inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.ml.fuse.features import NORMALISATION, ClinicalEncoder, ClinicalTable, clinical_table

if TYPE_CHECKING:
    from mskstudio.store import Project

STANDARDISATION = ("per fold, from that fold's training rows only: missing numbers -> the training "
                   "median; then (x - training mean) / training sd; a column constant in training "
                   "(e.g. a category that fold never saw) is multiplied by 0")


def clinical_spec(table: ClinicalTable, layout_rows: Sequence[int]) -> dict[str, Any]:
    """The raw vector's layout, from ``layout_rows`` (the run's cross-validation rows)."""
    enc = ClinicalEncoder(impute=False).fit(table, layout_rows)
    return {"fields": list(table.fields), "columns": list(enc.columns), "groups": list(enc.groups),
            "categories": {k: list(v) for k, v in enc.categories.items()},
            "normalisation": NORMALISATION, "standardisation": STANDARDISATION,
            "missing": "NaN in the raw vector for a missing number; one-hot all 0 and the "
                       "field:missing column 1 for a missing category"}


def encode_raw(table: ClinicalTable, spec: dict[str, Any]) -> np.ndarray:
    """[rows, len(spec.columns)] float32 raw clinical vectors of every row of ``table``."""
    if list(table.fields) != list(spec["fields"]):
        raise ValueError(f"clinical fields {table.fields} differ from the run's {spec['fields']}")
    enc = ClinicalEncoder(impute=False)
    enc.categories = {k: list(v) for k, v in spec["categories"].items()}
    x = enc.transform(table, np.arange(len(table.image_ids)))
    if x.shape[1] != len(spec["columns"]):
        raise ValueError("the clinical vector does not match the run's columns")
    return x.astype(np.float32)


def clinical_vectors(project: Project, image_ids: Sequence[int], spec: dict[str, Any]) -> np.ndarray:
    """The raw clinical vectors of ``image_ids`` under a run's ``spec`` (its stored layout)."""
    return encode_raw(clinical_table(project, list(image_ids), spec["fields"]), spec)


def card_section(spec: dict[str, Any] | None) -> list[str]:
    """Model-card lines (Markdown) for the clinical input of a joint-fusion model."""
    if not spec:
        return []
    lines = ["## Clinical input (joint fusion)", "",
             f"Second input `clinical`: float32 [batch, {len(spec['columns'])}], one value per column below.",
             "", f"- Fields: {', '.join(spec['fields'])}",
             f"- Labs: {spec['normalisation']}", f"- Missing values: {spec['missing']}",
             f"- Normalisation inside the graph: {spec['standardisation']}", "",
             "| # | column | field |", "|---|---|---|"]
    lines += [f"| {k} | {c} | {g} |" for k, (c, g) in enumerate(zip(spec["columns"], spec["groups"], strict=True))]
    return [*lines, ""]

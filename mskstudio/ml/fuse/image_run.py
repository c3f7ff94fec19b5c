"""What a fusion reads from a finished classifier run: its split and its cached scores.

``ml/classify/train.py`` stores the patient-level split in ``model_runs.split`` and, in
``metrics``, the pooled out-of-fold report (``main.oof``) and the fold ensemble's hold-out
report (``holdout``), each with ``image_ids``, ``probs`` and ``y_true``.  Every fusion
model trains on exactly those folds and is scored on exactly that hold-out, so the
comparison with the image model is paired and no torch is needed: fusion trains in
seconds on these cached scores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mskstudio.store import Project


@dataclass
class ImageRun:
    run_id: int
    name: str
    label_set_id: int | None
    label_set: str
    classes: list[str]
    split: dict[str, Any]
    metrics: dict[str, Any]
    cv_ids: list[int]            # out-of-fold rows, in the run's stored order
    cv_probs: np.ndarray         # [n_cv, C] out-of-fold probabilities
    cv_y: np.ndarray
    fold: np.ndarray             # fold in which each cv row was validated
    test_ids: list[int]
    test_probs: np.ndarray       # [n_test, C] fold-ensemble probabilities
    test_y: np.ndarray

    @property
    def ids(self) -> list[int]:
        return self.cv_ids + self.test_ids


def load_image_run(project: Project, run_id: int) -> ImageRun:
    row = project.models.get(int(run_id))
    if row is None:
        raise ValueError(f"no model run {run_id}")
    if row["kind"] != "classifier":
        raise ValueError(f"model run {run_id} is a {row['kind']} run, not an image classifier run")
    if row["status"] != "done":
        raise ValueError(f"classifier run {run_id} is {row['status']}, not finished")
    metrics = json.loads(row["metrics"] or "{}")
    if "main" not in metrics:
        raise ValueError(f"classifier run {run_id} is a two-stage cascade; fusion reads flat classifier runs")
    oof = metrics["main"].get("oof") or {}
    hold = metrics.get("holdout") or {}
    if not oof.get("image_ids"):
        raise ValueError(f"classifier run {run_id} has no stored out-of-fold predictions (retrain it)")
    split = json.loads(row["split"] or "{}")
    fold_of = {int(i): f for f, part in enumerate(split.get("folds", [])) for i in part["val"]}
    cv_ids = [int(i) for i in oof["image_ids"]]
    missing = [i for i in cv_ids if i not in fold_of]
    if missing:
        raise ValueError(f"classifier run {run_id}: out-of-fold image {missing[0]} is in no validation fold")
    classes = list(metrics.get("classes") or oof.get("classes") or [])
    c = len(classes)
    return ImageRun(
        run_id=int(run_id), name=row["name"], label_set_id=row["label_set_id"],
        label_set=str(metrics.get("label_set", "")), classes=classes, split=split, metrics=metrics,
        cv_ids=cv_ids, cv_probs=np.asarray(oof["probs"], float).reshape(-1, c),
        cv_y=np.asarray(oof["y_true"], int), fold=np.asarray([fold_of[i] for i in cv_ids], int),
        test_ids=[int(i) for i in hold.get("image_ids") or []],
        test_probs=np.asarray(hold.get("probs") or [], float).reshape(-1, c),
        test_y=np.asarray(hold.get("y_true") or [], int))

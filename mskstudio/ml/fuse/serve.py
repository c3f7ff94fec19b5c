"""A finished fusion run used like an image classifier run: predictions, similar cases, noise.

* ``load_fitted``: the final fusion learner (fitted on every CV row: what scored the
  hold-out) is the run's checkpoint (``stored.py``, a pickle blob); a run stored before
  that is refitted once, deterministically, from the image run's cached scores.
* ``fusion_probs``: per-image probabilities from the image run's fold ensemble on the
  image (its probabilities, or its fold models' embeddings) plus that patient's clinical
  features, through the stored learner.  ``ml/classify/predict.py`` calls it for a fusion
  run and hands in its own image prediction (so this module never imports it).
* ``clinical_block``: the standardised clinical columns of a fusion or joint run's fields
  (fitted on its cross-validation rows), what retrieval appends to the image embedding.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.jobs import JobContext
from mskstudio.ml.fuse.stored import read_fitted, save_fitted

if TYPE_CHECKING:
    from mskstudio.store import Project

def load_fitted(project: Project, run_id: int) -> Any:
    """The run's final learner (``crossfit.Fitted``)."""
    row = project.models.get(int(run_id))
    if row is None or row["kind"] != "fusion":
        raise ValueError(f"model run {run_id} is not a fusion run")
    fitted = read_fitted(project, row["checkpoint_sha"])
    if fitted is not None:
        return fitted
    # A run stored before its learner was: refit it (same rows, same seed -> the same model).
    from mskstudio.ml.fuse.fuse import fit_and_score, resolve_params
    from mskstudio.ml.fuse.image_run import load_image_run

    p = resolve_params(project, json.loads(row["params"] or "{}"))
    ir = load_image_run(project, int(p["image_run"]))
    cf, _ = fit_and_score(project, ir, p, JobContext.null())
    save_fitted(project, int(run_id), cf.final)
    return cf.final


def fusion_params(project: Project, run_id: int) -> dict[str, Any]:
    row = project.models.get(int(run_id))
    if row is None or row["kind"] != "fusion":
        raise ValueError(f"model run {run_id} is not a fusion run")
    return json.loads(row["params"] or "{}")


def fusion_probs(project: Project, run_id: int, image_ids: Sequence[int],
                 image_predict: Callable[[int, list[int], JobContext], dict[str, Any]],
                 ctx: JobContext | None = None) -> dict[str, Any]:
    """``predict_probs``' result for a fusion run: image model + clinical features -> learner.

    ``image_predict(image_run, ids, ctx)`` is the image run's own prediction (its raw fold
    ensemble probabilities, no operating point: what the learner was trained on)."""
    from mskstudio.ml.fuse.crossfit import Design, image_block
    from mskstudio.ml.fuse.features import clinical_table

    ctx = ctx or JobContext.null()
    p = fusion_params(project, run_id)
    fitted = load_fitted(project, run_id)
    ids = [int(i) for i in image_ids]
    image = image_predict(int(p["image_run"]), ids, ctx.sub(0.0, 0.7))
    names = list(image["class_names"])
    table = clinical_table(project, ids, p["clinical"]) if p.get("clinical") else None
    y = np.zeros(len(ids), int)
    rows = np.arange(len(ids))
    if p.get("image_input") == "embedding":
        from mskstudio.ml.fuse.embed import embedding_views

        views = embedding_views(project, int(p["image_run"]), ids, ctx.sub(0.7, 0.95))
        probs = np.mean([fitted.predict_proba(Design(v, [], table, y, len(names), fitted_impute(fitted)), rows)
                         for v in views], axis=0)
    else:
        x, cols = image_block(p["mode"], image["probs"], names)
        probs = fitted.predict_proba(Design(x, cols, table, y, len(names), fitted_impute(fitted)), rows)
    ctx.progress(1.0, "fused")
    return {"class_ids": image["class_ids"], "class_names": names, "probs": probs,
            "pred": probs.argmax(1) if len(probs) else np.zeros(0, int),
            "rejected": np.zeros(len(ids), bool), "reject_class_id": None}


def fitted_impute(fitted: Any) -> bool:
    return bool(fitted.encoder.impute) if fitted.encoder is not None else True


def run_fields_and_cv(project: Project, run_id: int) -> tuple[list[str], list[int], int] | None:
    """(clinical fields, CV image ids, the run whose images embed) of a fusion or joint run; None otherwise."""
    row = project.models.get(int(run_id))
    if row is None:
        return None
    params = json.loads(row["params"] or "{}")
    if row["kind"] == "fusion":
        image_run = int(params["image_run"])
    elif row["kind"] == "classifier" and params.get("clinical"):
        image_run = int(run_id)
    else:
        return None
    split = json.loads(row["split"] or "{}")
    cv = sorted({int(i) for part in split.get("folds", []) for i in part["val"]})
    return list(params.get("clinical") or []), cv, image_run


def clinical_block(project: Project, fields: list[str], cv_ids: Sequence[int],
                   image_ids: Sequence[int]) -> np.ndarray:
    """Clinical columns of ``image_ids``, imputed and z-scored with the CV rows' statistics,
    each row L2-normalised (so it weighs like an L2-normalised image embedding)."""
    from mskstudio.ml.fuse.features import ClinicalEncoder, clinical_table

    ids = [int(i) for i in image_ids]
    if not fields:
        return np.zeros((len(ids), 0), np.float32)
    cv = [int(i) for i in cv_ids]
    table = clinical_table(project, cv + ids, fields)
    cv_rows = np.arange(len(cv))
    enc = ClinicalEncoder(impute=True).fit(table, cv_rows)
    ref = enc.transform(table, cv_rows)
    x = enc.transform(table, np.arange(len(cv), len(cv) + len(ids)))
    sd = ref.std(0)
    x = (x - ref.mean(0)) * np.where(sd > 1e-8, 1.0 / np.maximum(sd, 1e-8), 0.0)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norm, 1e-8)).astype(np.float32)

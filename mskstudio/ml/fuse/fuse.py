"""Job ``fuse``: a metadata-only baseline, late fusion or stacking over a finished classifier run.

``run_fuse(project, {"model_run_id": ID, "mode": "late", "clinical": "age,sex,lab:ALP"}, ctx)``
reads the image run's split and cached scores (``image_run.py``), builds the clinical
table of the same images (``features.py``), cross-fits on the same patient-level folds
(``crossfit.py``) and stores a model run of kind ``fusion`` whose ``metrics`` have the
classifier runs' shape (``main.oof``, ``main.folds``, ``holdout`` with image ids,
probabilities and truth), so the dashboard compares image-only, metadata-only and
fusion runs side by side, plus ``fusion`` (fields, columns, imputation rule, timings)
and ``vs_image`` (paired hold-out differences to the image model).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.jobs import JobContext
from mskstudio.ml.evaluate import metrics as ev
from mskstudio.ml.fuse import compare
from mskstudio.ml.fuse.crossfit import CrossFit, Design, cross_fit, image_block
from mskstudio.ml.fuse.features import NORMALISATION, clinical_table
from mskstudio.ml.fuse.image_run import ImageRun, load_image_run
from mskstudio.ml.fuse.params import FuseParams
from mskstudio.ml.splits import split_summary

if TYPE_CHECKING:
    from mskstudio.store import Project

KIND = "fusion"


def resolve_params(project: Project, params: dict[str, Any]) -> dict[str, Any]:
    """Defaults + validation shared by the CLI, the dialog and the job (``FuseParams``)."""
    return FuseParams.from_json(params).resolved(project)


def build_design(project: Project, ir: ImageRun, mode: str, fields: list[str], learner: str,
                 image_input: str = "probs", pca: int = 16, ctx: JobContext | None = None) -> Design:
    table = clinical_table(project, ir.ids, fields) if fields else None
    y = np.concatenate([ir.cv_y, ir.test_y])
    impute = learner != "hgb"  # HistGradientBoosting routes NaN itself
    if image_input == "embedding" and mode != "metadata":
        from mskstudio.ml.fuse.embed import oof_embeddings

        e = oof_embeddings(project, ir, ctx)
        x = np.vstack([e.cv, e.test_views[0]]) if e.test_views else e.cv
        return Design(x.astype(float), [], table, y, len(ir.classes), impute=impute, image_pca=int(pca),
                      test_views=[v.astype(float) for v in e.test_views])
    probs = np.vstack([ir.cv_probs, ir.test_probs])
    x, cols = image_block(mode, probs, ir.classes)
    return Design(x, cols, table, y, len(ir.classes), impute=impute)


def run_fuse(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    t_start = time.monotonic()
    p = resolve_params(project, params)
    ir = load_image_run(project, int(p["image_run"]))
    ctx.log(f"{p['mode']} ({p['learner']}) over classifier run {ir.run_id}: {len(ir.cv_ids)} CV + "
            f"{len(ir.test_ids)} hold-out images, fields {', '.join(p['clinical']) or 'none'}")
    cf, metrics = fit_and_score(project, ir, p, ctx.sub(0.0, 0.95))
    metrics["timings"]["total_s"] = round(time.monotonic() - t_start, 2)
    run_id = store_run(project, ir, p, metrics, ctx)
    from mskstudio.ml.fuse.stored import save_fitted

    save_fitted(project, run_id, cf.final)  # what predictions of new images go through
    ctx.progress(1.0, "done")
    hold = metrics["holdout"]
    return {"model_run_id": run_id, "mode": p["mode"], "learner": p["learner"], "fields": p["clinical"],
            "holdout_accuracy": (hold.get("accuracy") or {}).get("value"), "holdout_n": hold.get("n", 0),
            "vs_image_accuracy": (metrics["vs_image"].get("accuracy") or {}).get("value"),
            "fit_s": metrics["timings"]["fit_s"]}


def fit_and_score(project: Project, ir: ImageRun, p: dict[str, Any],
                  ctx: JobContext) -> tuple[CrossFit, dict[str, Any]]:
    """Cross-fit ``p`` (resolved params) on the image run's folds and score it like a classifier run."""
    design = build_design(project, ir, p["mode"], p["clinical"], p["learner"], p.get("image_input", "probs"),
                          int(p.get("pca") or 16), ctx.sub(0.0, 0.4))
    cf = cross_fit(design, ir.fold, len(ir.cv_ids), p["learner"], seed=int(p["seed"]), ctx=ctx.sub(0.4, 0.8))
    ctx.progress(0.85, "scoring")
    metrics = score(project, ir, cf, p)
    metrics["timings"] = {"fit_s": round(cf.seconds, 3)}
    return cf, metrics


def score(project: Project, ir: ImageRun, cf: CrossFit, p: dict[str, Any]) -> dict[str, Any]:
    n_boot, seed = int(p["n_boot"]), int(p["seed"])
    names = ir.classes
    folds = []
    for f in sorted(set(ir.fold.tolist())):
        rows = np.flatnonzero(ir.fold == f)
        folds.append({"val": ev.classification_report(ir.cv_y[rows], cf.oof_probs[rows], names,
                                                      n_boot=min(n_boot, 200), seed=seed)})
    oof = ev.classification_report(ir.cv_y, cf.oof_probs, names, n_boot=n_boot, seed=seed)
    oof.update(image_ids=ir.cv_ids, probs=cf.oof_probs.round(5).tolist(), y_true=ir.cv_y.tolist())
    hold: dict[str, Any] = {"n": 0}
    vs_image: dict[str, Any] = {}
    if len(ir.test_ids):
        hold = ev.classification_report(ir.test_y, cf.test_probs, names, n_boot=n_boot, seed=seed)
        hold.update(image_ids=ir.test_ids, probs=cf.test_probs.round(5).tolist(), y_true=ir.test_y.tolist())
        vs_image = compare.paired(ir.test_y, ir.test_probs, cf.test_probs, n_boot=n_boot, seed=seed)
    patient_of = project.images.patient_of(ir.ids)
    targets = dict(zip(ir.ids, np.concatenate([ir.cv_y, ir.test_y]).tolist(), strict=True))
    encoder = cf.final.encoder
    return {
        "label_set": ir.label_set, "classes": names,
        "split": split_summary(ir.split, patient_of, targets),
        "main": {"oof": oof, "folds": folds}, "holdout": hold,
        "fusion": {"mode": p["mode"], "learner": p["learner"], "image_run": ir.run_id,
                   "image_input": p.get("image_input", "probs"),
                   "fields": p["clinical"], "columns": cf.final.columns, "groups": cf.final.groups,
                   "normalisation": NORMALISATION,
                   "imputation": encoder.rule() if encoder is not None else None},
        "vs_image": vs_image,
    }


def store_run(project: Project, ir: ImageRun, p: dict[str, Any], metrics: dict[str, Any],
              ctx: JobContext) -> int:
    fields = ",".join(p["clinical"]) or "no clinical fields"
    name = p["name"] or f"{ir.label_set} {p['mode']} {p['learner']} ({fields}) on #{ir.run_id}"
    stored = dict(p)
    run_id = project.models.create(KIND, f"{p['mode']}:{p['learner']}", name=name, params=stored,
                                   parent_run_id=ir.run_id, label_set_id=ir.label_set_id, job_id=ctx.job_id)
    project.models.set_fields(run_id, split=json.dumps(ir.split), metrics=json.dumps(jsonable(metrics)))
    project.models.set_status(run_id, "done", job_id=ctx.job_id)
    return run_id


def jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))

"""Job ``shap``: SHAP values of a fusion (or metadata-only) run, per field and per case.

The run's final learner is refitted on the image run's CV rows (deterministic: the same
seed, the same rows, seconds) and explained on the hold-out with the ``shap`` package:
``TreeExplainer`` for random forests (probability space) and HistGradientBoosting (raw
log-odds), ``LinearExplainer`` for logistic regression (log-odds, on the standardised
columns, background = the training rows).  SHAP's own additivity check runs (the values
plus the expected value give the model output).

Columns are summed into their field before taking magnitudes: the one-hot parts and the
missing indicator of ``site`` are one ``site`` value, the image model's scores one
``image`` value.  The run's ``metrics["shap"]`` gets mean |SHAP| per class and field;
the per-case values (with the case's raw values, units and reference ranges) go to
``cache/shap/run{ID}.json`` for the Review tab and ``mskstudio shap --case``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.jobs import JobContext
from mskstudio.ml.fuse.crossfit import Design, Fitted, fit
from mskstudio.ml.fuse.fuse import build_design, jsonable
from mskstudio.ml.fuse.image_run import load_image_run
from mskstudio.ml.fuse.params import ShapParams

if TYPE_CHECKING:
    from mskstudio.store import Project

OUTPUT_SPACE = {"rf": "probability", "hgb": "log-odds", "logreg": "log-odds"}


def shap_values(fitted: Fitted, design: Design, background_rows: np.ndarray,
                rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values [n, columns, classes], expected [classes], model output [n, classes]) of ``rows``.

    The classes are the learner's (``fitted.model.classes_``): a class no training row had
    has no output to explain."""
    import shap

    x = fitted.matrix(design, rows)
    model = fitted.model
    if hasattr(model, "steps"):  # logistic regression pipeline: explain the linear part
        scale, linear = model[:-1], model[-1]
        background = scale.transform(fitted.matrix(design, background_rows))
        xs = scale.transform(x)
        explainer = shap.LinearExplainer(linear, shap.maskers.Independent(background, max_samples=500))
        values = explainer.shap_values(xs)
        output = linear.decision_function(xs)
    else:
        explainer = shap.TreeExplainer(model)
        values = explainer.shap_values(x, check_additivity=True)
        output = model.predict_proba(x) if hasattr(model, "estimators_") else model.decision_function(x)
    values = np.asarray(values, float)
    expected = np.atleast_1d(np.asarray(explainer.expected_value, float))
    if values.ndim == 2:  # a two-class model explained with one output
        values, expected = values[:, :, None], expected[:1]
        output = np.asarray(output).reshape(len(x), 1)
    return values, expected, np.asarray(output, float).reshape(len(x), -1)


def group_values(values: np.ndarray, groups: list[str]) -> tuple[np.ndarray, list[str]]:
    """Sum the columns of each field (one-hot parts, missing indicator): [n, fields, classes]."""
    names = list(dict.fromkeys(groups))
    out = np.stack([values[:, [j for j, g in enumerate(groups) if g == name], :].sum(1) for name in names], 1)
    return out, names


def run_shap(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    run_id = int(ShapParams.from_json(params).check(project).model_run_id)
    row = project.models.get(run_id)
    p = json.loads(row["params"])
    if p.get("image_input", "probs") != "probs":
        raise ValueError(f"fusion run {run_id} reads image embeddings; SHAP is available for fusion runs "
                         "over the image model's probabilities (not yet over embeddings)")
    metrics = json.loads(row["metrics"] or "{}")
    ir = load_image_run(project, int(p["image_run"]))
    ctx.progress(0.1, "refitting the final learner")
    design = build_design(project, ir, p["mode"], p["clinical"], p["learner"])
    cv = np.arange(len(ir.cv_ids))
    test = np.arange(len(ir.cv_ids), len(ir.ids))
    if not len(test):
        raise ValueError(f"image run {ir.run_id} has no hold-out to explain")
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):  # see crossfit.cross_fit
        final = fit(design, cv, p["learner"], int(p.get("seed", 0)))
        stored = np.asarray(metrics.get("holdout", {}).get("probs") or [], float)
        drift = float(np.abs(final.predict_proba(design, test) - stored).max()) if stored.shape == (len(test), len(
            ir.classes)) else None
        if drift is not None and drift > 1e-3:
            ctx.log(f"note: refitted hold-out probabilities differ from the stored run by up to {drift:.3g} "
                    "(the clinical data changed since the run)")
        ctx.progress(0.3, "SHAP")
        values, expected, output = shap_values(final, design, cv, test)
    grouped, names = group_values(values, final.groups)
    present = [ir.classes[int(j)] for j in final.model.classes_]
    classes = present if grouped.shape[2] == len(present) else present[-1:]
    mean_abs = np.abs(grouped).mean(0)  # [fields, classes]
    summary = {
        "output": OUTPUT_SPACE[p["learner"]], "n": len(test), "fields": names, "classes": classes,
        "mean_abs": {f: {c: round(float(mean_abs[i, k]), 6) for k, c in enumerate(classes)}
                     for i, f in enumerate(names)},
        "mean_abs_overall": {f: round(float(mean_abs[i].mean()), 6) for i, f in enumerate(names)},
        "additivity_max_error": float(np.abs(values.sum(1) + expected - output).max()),
    }
    cases = per_case(ir, design, final, test, grouped, names, classes, expected)
    path = project.cache_path("shap", f"run{run_id}.json")
    path.write_text(json.dumps(jsonable({"run": run_id, "summary": summary, "cases": cases})))
    metrics["shap"] = summary
    project.models.set_fields(run_id, metrics=json.dumps(jsonable(metrics)))
    ctx.progress(1.0, "done")
    return {"fusion_run": run_id, "cache": str(path), **summary}


def per_case(ir, design: Design, final: Fitted, test: np.ndarray, grouped: np.ndarray, names: list[str],
             classes: list[str], expected: np.ndarray) -> dict[str, Any]:
    probs = final.predict_proba(design, test)
    out = {}
    for k, r in enumerate(test):
        pred = int(probs[k].argmax())
        out[str(ir.ids[r])] = {
            "truth": ir.classes[int(design.y[r])], "predicted": ir.classes[pred],
            "probs": [round(float(v), 5) for v in probs[k]],
            "expected": [round(float(v), 6) for v in expected],
            "shap": {f: [round(float(v), 6) for v in grouped[k, i]] for i, f in enumerate(names)},
            "values": design.table.describe(int(r)) if design.table is not None else {},
        }
    return out


def case_explanation(project: Project, fusion_run: int, image_id: int) -> dict[str, Any] | None:
    """One image's cached SHAP explanation (None when the ``shap`` job has not run for it)."""
    path = project.cache_path("shap", f"run{int(fusion_run)}.json")
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    case = data["cases"].get(str(int(image_id)))
    if case is None:
        return None
    return {**case, "classes": data["summary"]["classes"], "output": data["summary"]["output"]}

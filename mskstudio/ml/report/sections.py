"""The study report's sections: each builds its tables and figures through a ``ReportWriter``.

Every section returns plain data for the template; the numbers come from
``mskstudio.ml.evaluate.metrics`` (metrics, compare, calibration, subgroups, cohort).
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import numpy as np

from mskstudio.io.analysis import load_analysis
from mskstudio.ml.evaluate import dashboard_figures as dd
from mskstudio.ml.report import figures as figs

PARAM_KEYS = ("arch", "init", "size", "input", "k", "epochs", "batch_size", "lr", "augment", "class_weights",
              "freeze_encoder", "mask_guidance", "holdout", "test_centre", "seed")


def flow_section(project, first_run, w) -> dict[str, Any]:
    from mskstudio.ml.report.flow import flow_rows, flow_svg, selection_flow

    flow = selection_flow(project, first_run)
    svg = w.figure_path("selection_flow", "svg")
    svg.write_text(flow_svg(flow), encoding="utf-8")
    w.figures.append(svg)
    return {"table": w.table("selection_flow", f"Selection flow (run #{first_run['id']})", flow_rows(flow)),
            "figure": w.rel(svg), "run": int(first_run["id"])}


def _truth_and_part(metrics: dict[str, Any]) -> tuple[dict[int, str], dict[int, str]]:
    hold = dd.report(metrics, "holdout")
    oof = dd.report(metrics, "oof")
    truth, part = {}, {}
    for rep, name in ((oof, "development"), (hold, "hold-out")):
        classes = dd.classes_of(metrics, rep)
        for i, y in zip(rep.get("image_ids") or [], rep.get("y_true") or [], strict=False):
            if 0 <= int(y) < len(classes):
                truth[int(i)] = classes[int(y)]
            part[int(i)] = name
    return truth, part


def cohort_section(first_run, attributes: dict[int, dict[str, Any]], w) -> dict[str, Any]:
    from mskstudio.ml.evaluate.cohort import cohort_rows, cohort_table

    metrics = json.loads(first_run["metrics"])
    truth, part = _truth_and_part(metrics)
    attrs = {i: a for i, a in attributes.items() if i in truth or i in part}
    by_class = cohort_table(attrs, truth, group_order=dd.classes_of(metrics, dd.report(metrics, "holdout")))
    by_part = cohort_table(attrs, part, group_order=["development", "hold-out"])
    return {"by_class": w.table("cohort_by_class", "Cohort by reference class (analysed images)",
                                cohort_rows(by_class)),
            "by_part": w.table("cohort_by_test_set", "Cohort by part: development folds vs hold-out",
                               cohort_rows(by_part)),
            "run": int(first_run["id"])}


def _roc(rep: dict[str, Any], classes: list[str]) -> list[tuple[str, Any, Any, float]]:
    curves = dd.roc_curves(rep, classes)
    if len(classes) == 2 and classes[1] in curves:
        curves = {classes[1]: curves[classes[1]]}
    return [(name, fpr, tpr, auc) for name, (fpr, tpr, auc) in curves.items()]


def _op_rows(op: dict[str, Any]) -> list[list[Any]]:
    rows = [["figure", "validation (out-of-fold)", "hold-out"]]
    hv, hh = op["validation"], op.get("holdout") or {}
    for key, label in (("brier", "Brier score"), ("ece", "expected calibration error"), ("nll", "log loss")):
        for when in ("before", "after"):
            tag = "" if when == "before" else f" after temperature (T = {op['temperature']:.3f})"
            v = hv[when][key]
            h = (hh.get(when) or {}).get(key, math.nan)
            rows.append([label + tag, f"{v:.4f}", "" if math.isnan(h) else f"{h:.4f}"])
    rule = op["rule"] + (f" ≥ {op['target']:g}" if op.get("target") is not None else "")
    rows.append([f"threshold on P({op['positive']}) ({rule}, chosen on validation)", f"{op['threshold']:.4f}", ""])
    for key in ("sensitivity", "specificity", "ppv", "npv", "accuracy"):
        rows.append([f"{key} at the threshold", dd.fmt_prop(hv["at_threshold"][key]),
                     dd.fmt_prop((hh.get("at_threshold") or {}).get(key))])
    if hh.get("at_argmax"):
        for key in ("sensitivity", "specificity"):
            rows.append([f"{key} at argmax (for comparison)", "", dd.fmt_prop(hh["at_argmax"][key])])
    return rows


def run_section(project, row, attributes, w, p) -> dict[str, Any]:
    from mskstudio.ml.evaluate.calibration import operating_point
    from mskstudio.ml.evaluate.subgroups import all_subgroups, subgroup_table

    rid = int(row["id"])
    metrics = json.loads(row["metrics"])
    params = json.loads(row["params"] or "{}")
    hold = dd.report(metrics, "holdout")
    classes = dd.classes_of(metrics, hold)
    split = json.loads(row["split"]) if row["split"] else {}
    ls = project.labels.label_set_name(int(row["label_set_id"])) if row["label_set_id"] else ""
    setup = [["item", "value"], ["model run", f"#{rid} {row['name']}"], ["kind", row["kind"]],
             ["label set", ls or "–"], ["classes", ", ".join(classes)],
             ["hold-out", f"{split.get('holdout', '?')} ({len(split.get('test', []))} images)"],
             ["cross-validation folds", str(len(split.get("folds", [])))],
             *[[k, str(params[k])] for k in PARAM_KEYS if k in params]]
    out: dict[str, Any] = {
        "id": rid, "name": row["name"], "kind": row["kind"], "classes": classes,
        "setup": w.table(f"run{rid}_setup", f"Run #{rid}: set-up", setup),
        "summary": w.table(f"run{rid}_summary", f"Run #{rid}: hold-out summary",
                           [["figure", "value [95% CI]"], *[list(t) for t in dd.summary(hold)]]),
        "per_class": w.table(f"run{rid}_per_class", f"Run #{rid}: per class (hold-out)",
                             dd.per_class_rows(hold, classes)),
        "confusion": w.table(f"run{rid}_confusion", f"Run #{rid}: confusion matrix (hold-out, rows = truth)",
                             dd.confusion_rows(hold, classes)),
        "holdout": hold,
    }
    sets = [["test set", "n", "accuracy [95% CI]", "macro AUC [95% CI]", "majority-class rate"]]
    for title, key in dd.test_sets(metrics):
        rep = dd.report(metrics, key)
        sets.append([title, rep.get("n", 0), dd.fmt_prop(rep.get("accuracy")),
                     dd.fmt_prop((rep.get("macro") or {}).get("auc")), f"{rep.get('majority_rate', math.nan):.3f}"])
    out["test_sets"] = w.table(f"run{rid}_test_sets", f"Run #{rid}: every test set (never trained on)", sets)
    for title, key in dd.test_sets(metrics)[1:]:
        rep = dd.report(metrics, key)
        out.setdefault("external", []).append(
            w.table(f"run{rid}_per_class_{key.replace(':', '_')}", f"Run #{rid}: per class, {title}",
                    dd.per_class_rows(rep, dd.classes_of(metrics, rep))))
    out["errors"] = w.table(f"run{rid}_errors", f"Run #{rid}: the most confident errors on the hold-out",
                            error_rows(hold, classes))
    roc = w.figure_path(f"run{rid}_roc")
    figs.roc_figure(_roc(hold, classes), roc, title=f"Run #{rid}: ROC on the hold-out (n = {hold.get('n', 0)})")
    w.figures.append(roc)
    out["roc"] = w.rel(roc)
    # calibration and operating point: the stored one when the run has it, else fitted now
    op, op_note = metrics.get("operating_point"), "stored on the run (used by predictions)"
    if op is None:
        oof = dd.report(metrics, "oof")
        if oof.get("probs") and dd.classes_of(metrics, oof) == classes:
            try:
                op = operating_point(metrics, rule=p["rule"], target=p["target"])
                op_note = "fitted for this report on the out-of-fold predictions (not stored)"
            except ValueError as exc:
                op_note = str(exc)
        else:
            op_note = "no out-of-fold probabilities with the hold-out's classes (older or cascade run)"
    out["operating_point_note"] = op_note
    if op is not None:
        out["calibration"] = w.table(f"run{rid}_calibration", f"Run #{rid}: calibration and operating point",
                                     _op_rows(op))
        rel = w.figure_path(f"run{rid}_reliability")
        series = [("validation", op["validation"]["before"]["reliability"])]
        if op.get("holdout"):
            series += [("hold-out", op["holdout"]["before"]["reliability"]),
                       ("hold-out, temperature-scaled", op["holdout"]["after"]["reliability"])]
        figs.reliability_figure(series, rel, title=f"Run #{rid}: reliability")
        w.figures.append(rel)
        out["reliability"] = w.rel(rel)
    rows = all_subgroups(hold, attributes, n_boot=int(p["n_boot"]), seed=int(p["seed"]))
    out["subgroups"] = w.table(f"run{rid}_subgroups", f"Run #{rid}: subgroups (hold-out)", subgroup_table(rows))
    if rows:
        metric = "auc" if not all(math.isnan(r["auc"]["value"]) for r in rows) else "accuracy"
        overall = ((hold.get("macro") or {}).get("auc") or {}).get("value") if metric == "auc" \
            else (hold.get("accuracy") or {}).get("value")
        if len(classes) == 2:
            overall = ((hold.get("per_class") or {}).get(classes[1], {}).get("auc") or {}).get("value", overall)
        forest = w.figure_path(f"run{rid}_forest")
        figs.forest_figure(rows, forest, metric=metric, overall=overall,
                           title=f"Run #{rid}: {metric.upper() if metric == 'auc' else metric} by subgroup")
        w.figures.append(forest)
        out["forest"] = w.rel(forest)
    return out


def error_rows(rep: dict[str, Any], classes: list[str], limit: int = 20) -> list[list[Any]]:
    """Misclassified hold-out cases, most confident first (false positives of the predicted class,
    false negatives of the true one): where to look first in the Viewer.  The selection is the
    Dashboard's "wrong, most confident" gallery (``ml.evaluate.errors``)."""
    from mskstudio.ml.evaluate.errors import wrong_cases

    rows: list[list[Any]] = [["image", "truth", "predicted", "P(predicted)", "P(truth)"]]
    for c in wrong_cases(rep, classes, limit):
        rows.append([f"#{c.image_id}", c.truth, c.predicted, f"{c.p_predicted:.3f}", f"{c.p_truth:.3f}"])
    return rows


def _same_cases(a: dict[str, Any], b: dict[str, Any]) -> bool:
    ha, hb = a["holdout"], b["holdout"]
    return ha.get("image_ids") == hb.get("image_ids") and ha.get("y_true") == hb.get("y_true") \
        and a["classes"] == b["classes"]


def comparison_section(runs: list[dict[str, Any]], w) -> dict[str, Any]:
    """Every pair of runs scored on the same hold-out: DeLong per AUC, McNemar; Holm over all tests."""
    from mskstudio.ml.evaluate.compare import compare_runs, holm

    tests: list[dict[str, Any]] = []
    skipped = []
    for a, b in itertools.combinations(runs, 2):
        if not _same_cases(a, b):
            skipped.append(f"#{a['id']} vs #{b['id']}: different hold-out cases")
            continue
        c = compare_runs(a["holdout"]["y_true"], np.asarray(a["holdout"]["probs"]),
                         np.asarray(b["holdout"]["probs"]), a["classes"])
        for t in c["auc"]:
            tests.append({"pair": f"#{b['id']} − #{a['id']}", "what": f"AUC {t['class']} (DeLong)",
                          "diff": t["diff"], "ci": t["ci"], "p": t["p"], "n": t["n"]})
        m = c["mcnemar"]
        acc_diff = (m["b_only"] - m["a_only"]) / m["n"] if m["n"] else math.nan
        tests.append({"pair": f"#{b['id']} − #{a['id']}", "what": "accuracy (exact McNemar)",
                      "diff": acc_diff, "ci": [math.nan, math.nan], "p": m["p"], "n": m["n"],
                      "detail": f"{m['b_only']} right only in #{b['id']}, {m['a_only']} only in #{a['id']}"})
    adjusted = holm([t["p"] for t in tests]) if tests else []
    rows = [["comparison", "figure", "difference", "95% CI", "p", "p (Holm)", "n", "detail"]]
    for t, q in zip(tests, adjusted, strict=True):
        ci = "" if math.isnan(t["ci"][0]) else f"{t['ci'][0]:+.3f} to {t['ci'][1]:+.3f}"
        rows.append([t["pair"], t["what"], "n/a" if math.isnan(t["diff"]) else f"{t['diff']:+.3f}", ci,
                     "n/a" if math.isnan(t["p"]) else f"{t['p']:.4f}", "n/a" if math.isnan(q) else f"{q:.4f}",
                     t["n"], t.get("detail", "")])
    return {"table": w.table("comparisons", "Paired comparisons on the same hold-out", rows) if tests else None,
            "n_tests": len(tests), "skipped": skipped}


def gradcam_section(project, row, w, max_cams: int) -> dict[str, Any]:
    """Cached Grad-CAM maps of hold-out images (Model › Explain fills the cache); none computed here."""
    rid = int(row["id"])
    folder = project.cache_dir / "cam" / str(rid)
    hold = dd.report(json.loads(row["metrics"]), "holdout")
    classes = dd.classes_of(json.loads(row["metrics"]), hold)
    probs = np.asarray(hold.get("probs") or [], float)
    items = []
    for k, (image_id, y) in enumerate(zip(hold.get("image_ids") or [], hold.get("y_true") or [], strict=False)):
        if len(items) >= max_cams:
            break
        # any cached map of the predicted class (single- or multi-scale, any layer), first by name
        cached = sorted(folder.glob(f"{int(image_id)}-*-pred*.npy")) if folder.is_dir() else []
        if not cached:
            continue
        path = cached[0]
        try:
            cam = np.load(path)
            image = load_analysis(project, int(image_id))
        except (OSError, ValueError) as exc:
            items.append({"image_id": int(image_id), "error": str(exc)})
            continue
        pred = int(probs[k].argmax())
        title = f"#{image_id}: truth {classes[int(y)]}, predicted {classes[pred]} ({probs[k, pred]:.2f})"
        out = w.figure_path(f"run{rid}_cam_{image_id}", "png")
        figs.cam_figure(image, cam, out, title=title)
        w.figures.append(out)
        items.append({"image_id": int(image_id), "figure": w.rel(out), "title": title})
    return {"run": rid, "cams": items}


def readers_section(project, w) -> dict[str, Any] | None:
    """Reader-study tables (performance, kappas, readers vs model, reading time) of every
    study with answered reads."""
    from mskstudio.ml.readers.job import report_tables

    tables = []
    for k, t in enumerate(report_tables(project)):
        tables.append(w.table(f"readers_{k}", t["title"], t["rows"]))
    return {"tables": tables, "note": "" if tables else "no reader study with results"}

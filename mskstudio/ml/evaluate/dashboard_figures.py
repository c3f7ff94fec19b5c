"""Qt-free figures of the model dashboard, from a classifier run's ``metrics`` JSON.

``report(metrics, which)`` picks the hold-out or the pooled out-of-fold report;
``roc_curves`` gives one-vs-rest ROC points (hold-out only: it keeps ``probs``);
``cases_in_cell`` lists the hold-out images in one confusion-matrix cell;
``per_class_rows`` / ``comparison_rows`` / ``confusion_rows`` are the tables (also the
CSV exports); ``learning_curves`` reads the per-fold ``history``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

REPORTS = (("Hold-out (fold ensemble)", "holdout"), ("Out-of-fold validation", "oof"))
CURVE_KEYS = ("train_loss", "val_loss", "train_acc", "val_acc", "train_attention",
              "val_attention")  # attention: mask-guided runs
# The learning-curve views: which keys each draws, in which line style.
CURVE_VIEWS = (("loss & accuracy", "loss"), ("mask attention", "attention"))
CURVE_STYLES = {"loss": {"val_loss": "solid", "train_loss": "dash", "val_acc": "dot"},
                "attention": {"val_attention": "solid", "train_attention": "dash"}}
STYLE_GLYPHS = {"solid": "—", "dash": "– –", "dot": "···"}


def test_sets(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, key) of every test set of a run: the internal hold-out, then each external centre."""
    out = [("internal hold-out", "holdout")] if metrics.get("holdout") else []
    return out + [(f"external: {c}", f"external:{c}") for c in sorted(metrics.get("external") or {})]


def task_of(metrics: dict[str, Any]) -> str:
    return "main" if "main" in metrics else ("stage2" if "stage2" in metrics else "main")


def report(metrics: dict[str, Any], which: str = "holdout") -> dict[str, Any]:
    """``holdout``, ``oof`` or ``external:<centre>`` (a run's external test sets)."""
    if which == "holdout":
        return metrics.get("holdout") or {}
    if which.startswith("external:"):
        return (metrics.get("external") or {}).get(which.split(":", 1)[1]) or {}
    return (metrics.get(task_of(metrics)) or {}).get("oof") or {}


def classes_of(metrics: dict[str, Any], rep: dict[str, Any]) -> list[str]:
    return list(rep.get("classes") or metrics.get("classes") or [])


def fmt_prop(prop: dict[str, Any] | None, digits: int = 3) -> str:
    if not prop:
        return "n/a"
    v = prop.get("value")
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    lo, hi = (prop.get("ci") or [math.nan, math.nan])[:2]
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return f"{v:.{digits}f}"
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def roc_curves(rep: dict[str, Any], classes: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """class name -> (fpr, tpr, auc) one-vs-rest; empty without stored probabilities."""
    from sklearn.metrics import roc_auc_score, roc_curve

    probs, y = rep.get("probs"), rep.get("y_true")
    if not probs or y is None:
        return {}
    probs, y = np.asarray(probs, float), np.asarray(y, int)
    out = {}
    for j, name in enumerate(classes):
        yb = (y == j).astype(int)
        if j >= probs.shape[1] or yb.min() == yb.max():
            continue
        fpr, tpr, _ = roc_curve(yb, probs[:, j])
        out[name] = (fpr, tpr, float(roc_auc_score(yb, probs[:, j])))
    return out


def predicted(rep: dict[str, Any]) -> np.ndarray | None:
    probs = rep.get("probs")
    if not probs:
        return None
    return np.asarray(probs, float).argmax(1)


def cases_in_cell(rep: dict[str, Any], truth: int, pred: int) -> list[int]:
    """Hold-out image ids with true class index ``truth`` predicted as ``pred``."""
    ids, y, p = rep.get("image_ids"), rep.get("y_true"), predicted(rep)
    if not ids or y is None or p is None:
        return []
    return [int(i) for i, t, q in zip(ids, y, p, strict=False) if int(t) == truth and int(q) == pred]


def confusion_rows(rep: dict[str, Any], classes: list[str]) -> list[list[Any]]:
    cm = rep.get("confusion") or []
    rows = [["truth \\ predicted", *classes]]
    for name, row in zip(classes, cm, strict=False):
        rows.append([name, *[int(v) for v in row]])
    return rows


PER_CLASS_HEADER = ["class", "n", "sensitivity [95% CI]", "specificity [95% CI]", "PPV [95% CI]",
                    "NPV [95% CI]", "F1", "AUC [95% CI]"]


def per_class_rows(rep: dict[str, Any], classes: list[str]) -> list[list[Any]]:
    rows = [PER_CLASS_HEADER]
    pc = rep.get("per_class") or {}
    for name in classes:
        c = pc.get(name)
        if c is None:
            continue
        f1 = c.get("f1")
        rows.append([name, c.get("support", 0), fmt_prop(c.get("sensitivity")),
                     fmt_prop(c.get("specificity")),
                     fmt_prop(c.get("ppv")), fmt_prop(c.get("npv")),
                     "n/a" if f1 is None or math.isnan(f1) else f"{f1:.3f}", fmt_prop(c.get("auc"))])
    return rows


def summary(rep: dict[str, Any]) -> list[tuple[str, str]]:
    """(figure, value with CI) lines of one report."""
    if not rep or not rep.get("n"):
        return [("n", "0")]
    macro = rep.get("macro") or {}
    f1 = macro.get("f1")
    lines = [("n", str(rep["n"])), ("accuracy", fmt_prop(rep.get("accuracy"))),
             ("top-2 accuracy", fmt_prop(rep.get("top2_accuracy"))),
             ("macro AUC", fmt_prop(macro.get("auc"))),
             ("macro F1", "n/a" if f1 is None or math.isnan(f1) else f"{f1:.3f}"),
             ("majority-class rate", f"{rep.get('majority_rate', math.nan):.3f}")]
    if "rejected" in rep:
        lines.append(("rejected", fmt_prop(rep["rejected"])))
        lines.append(("accuracy of accepted", fmt_prop(rep.get("accuracy_accepted"))))
    return lines


def comparison_rows(runs: list[tuple[str, dict[str, Any], dict[str, Any]]],
                    which: str = "holdout") -> list[list[str]]:
    """Figures side by side: ``runs`` = [(title, metrics, params)]."""
    header = ["figure", *[t for t, _m, _p in runs]]
    rows: dict[str, list[str]] = {}
    order: list[str] = []
    for k, (_t, m, p) in enumerate(runs):
        lines = [("init", str(p.get("init", "scratch"))), ("architecture", str(p.get("arch", "?"))),
                 ("frozen encoder", "yes" if p.get("freeze_encoder") else "no"),
                 *summary(report(m, which)), *pointing_lines(m), *operating_point_lines(m, which)]
        for name, value in lines:
            if name not in rows:
                rows[name] = [""] * len(runs)
                order.append(name)
            rows[name][k] = value
    table = [header, *[[name, *rows[name]] for name in order]]
    if len(runs) == 2:
        paired = paired_difference(report(runs[0][1], which), report(runs[1][1], which))
        if paired is not None:
            table.append(["B − A accuracy, same cases (paired)", "", paired])
            table += [[name, "", value] for name, value in
                      paired_auc_rows(report(runs[0][1], which), report(runs[1][1], which))]
    return table


def _same_cases(rep_a: dict[str, Any], rep_b: dict[str, Any]) -> bool:
    return bool(rep_a.get("image_ids")) and rep_a.get("probs") is not None \
        and rep_b.get("probs") is not None and rep_a.get("image_ids") == rep_b.get("image_ids") \
        and rep_a.get("y_true") == rep_b.get("y_true") and rep_a.get("classes") == rep_b.get("classes")


def paired_auc_rows(rep_a: dict[str, Any], rep_b: dict[str, Any]) -> list[tuple[str, str]]:
    """DeLong's test of B − A AUC (one-vs-rest per class, Holm-adjusted when several)."""
    from mskstudio.ml.evaluate.compare import compare_runs

    if not _same_cases(rep_a, rep_b):
        return []
    classes = list(rep_a.get("classes") or [])
    cmp_ = compare_runs(rep_a["y_true"], np.asarray(rep_a["probs"]), np.asarray(rep_b["probs"]), classes)
    rows = []
    for t in cmp_["auc"]:
        if math.isnan(t["diff"]):
            continue
        holm = f"; Holm p {t['p_holm']:.3g}" if cmp_["multiple"] else ""
        rows.append((f"B − A AUC {t['class']} (DeLong)",
                     f"{t['diff']:+.3f} (95% CI {t['ci'][0]:+.3f} to {t['ci'][1]:+.3f}; "
                     f"p {t['p']:.3g}{holm}; n={t['n']})"))
    if cmp_["multiple"] and rows:
        rows.append(("note", f"{len(rows)} AUC tests: read the Holm-adjusted p-values"))
    return rows


def paired_difference(rep_a: dict[str, Any], rep_b: dict[str, Any]) -> str | None:
    """'+0.050 (95% CI …; McNemar p …; n …)' when both runs were scored on the same cases."""
    from mskstudio.ml.evaluate.metrics import paired_accuracy_difference

    pred_a, pred_b = predicted(rep_a), predicted(rep_b)
    if pred_a is None or pred_b is None or not rep_a.get("image_ids") \
            or rep_a.get("image_ids") != rep_b.get("image_ids") or rep_a.get("y_true") != rep_b.get("y_true") \
            or rep_a.get("classes") != rep_b.get("classes"):
        return None
    y = np.asarray(rep_a["y_true"], int)
    d = paired_accuracy_difference(pred_a == y, pred_b == y)
    return (f"{d['value']:+.3f} (95% CI {d['ci'][0]:+.3f} to {d['ci'][1]:+.3f}; "
            f"McNemar p {d['p_mcnemar']:.3g}; n={d['n']})")


def pointing_lines(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """The run's pointing game (Model › Pointing game), when it was scored."""
    pg_ = metrics.get("pointing_game")
    if not pg_ or not pg_["pointing"]["n"]:
        return []
    hit = pg_["pointing"]
    return [(f"Grad-CAM on lesion (±{pg_['tolerance_mm']:g} mm)",
             f"{hit['value']:.3f} [{hit['ci'][0]:.3f}–{hit['ci'][1]:.3f}] n={hit['n']}"),
            ("  chance (random body point)", f"{pg_['chance_mean']:.3f}")]


def operating_point_lines(metrics: dict[str, Any], which: str = "holdout") -> list[tuple[str, str]]:
    """The run's stored operating point (mskstudio operating-point): calibration and the threshold."""
    op = metrics.get("operating_point")
    part = (op or {}).get("holdout" if which == "holdout" else "validation")
    if not op or not part:
        return []
    at = part["at_threshold"]
    cal = part.get("after") or {}
    return [(f"operating point P({op['positive']}) ≥", f"{op['threshold']:.3f} ({op['rule']}, on validation)"),
            ("  sensitivity at it", fmt_prop(at["sensitivity"])),
            ("  specificity at it", fmt_prop(at["specificity"])),
            (f"Brier / ECE (T = {op['temperature']:.2f})",
             f"{cal.get('brier', math.nan):.3f} / {cal.get('ece', math.nan):.3f}")]


def learning_curves(metrics: dict[str, Any]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """fold name -> key -> [(epoch, value)] from the run's per-fold history."""
    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for task in ("main", "stage1", "stage2"):
        for f, fold in enumerate((metrics.get(task) or {}).get("folds") or []):
            name = f"fold {f}" if task == "main" else f"{task} fold {f}"
            curves = {k: [] for k in CURVE_KEYS}
            for h in fold.get("history") or []:
                # A guided run trained before train_objective was logged apart stored the
                # objective as train_loss: not comparable with val_loss, so not drawn.
                for k in CURVE_KEYS:
                    if k == "train_loss" and "train_attention" in h and "train_objective" not in h:
                        continue
                    v = h.get(k)
                    if v is not None and not (isinstance(v, float) and math.isnan(v)):
                        curves[k].append((int(h.get("epoch", len(curves[k]))), float(v)))
            out[name] = curves
    return out


def curves_from_job(job_metrics: dict[str, list[tuple[int, float]]]) -> dict[str, dict[str, list]]:
    """The same shape from ``project.jobs.metrics(job_id)`` (names like ``fold0/val_loss``)."""
    out: dict[str, dict[str, list]] = {}
    for name, points in job_metrics.items():
        if "/" not in name:
            continue
        fold, key = name.rsplit("/", 1)
        if key in CURVE_KEYS:
            out.setdefault(fold.replace("fold", "fold "), {k: [] for k in CURVE_KEYS})[key] = list(points)
    return out


def write_csv(path: str | Path, rows: list[list[Any]]) -> Path:
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path

"""Job ``ablation``: what each clinical field adds, on the image run's hold-out.

Configurations of one fusion mode (``late`` by default), each cross-fitted on the image
run's folds exactly like ``fuse`` and scored on its hold-out:

* ``all``: every chosen field;
* ``loo``: every field but one (leave-one-group-out), for each field;
* ``subsets``: every subset of ``groups`` (a few chosen fields; at most 6, so at most
  64 fits), the empty one included where the mode has image scores.

Each row: hold-out n, accuracy and macro AUC with 95% CIs, and the paired difference to
the image-only model on the same cases (accuracy: bootstrap CI and McNemar; macro AUC:
bootstrap CI).  Nothing is stored as a model run; the table is the job's result (and a
CSV when ``csv`` names a file).
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.jobs import JobContext
from mskstudio.ml.evaluate import metrics as ev
from mskstudio.ml.fuse import compare
from mskstudio.ml.fuse.crossfit import cross_fit
from mskstudio.ml.fuse.fuse import build_design
from mskstudio.ml.fuse.image_run import ImageRun, load_image_run
from mskstudio.ml.fuse.params import MAX_GROUPS, AblationParams

if TYPE_CHECKING:
    from mskstudio.store import Project



def configurations(fields: list[str], groups: list[str], scheme: str, mode: str) -> list[tuple[str, list[str]]]:
    """(name, fields) of every configuration, without duplicates, in a readable order."""
    if scheme not in ("loo", "subsets", "both"):
        raise ValueError(f"unknown ablation scheme {scheme!r} (loo, subsets or both)")
    configs: list[tuple[str, list[str]]] = [("all", list(fields))]
    if scheme in ("loo", "both"):
        configs += [(f"all − {f}", [g for g in fields if g != f]) for f in fields]
    if scheme in ("subsets", "both"):
        if not groups:
            raise ValueError("subsets need a few chosen groups (e.g. --groups age,lab:ALP,lab:LDH)")
        if len(groups) > MAX_GROUPS:
            raise ValueError(f"{len(groups)} groups make {2 ** len(groups)} subsets; choose at most {MAX_GROUPS}")
        for r in range(len(groups) + 1):
            for combo in itertools.combinations(groups, r):
                configs.append(("{" + ", ".join(combo) + "}", list(combo)))
    seen, out = set(), []
    for name, fs in configs:
        key = frozenset(fs)
        if key in seen or (mode == "metadata" and not fs):
            continue
        seen.add(key)
        out.append((name, fs))
    return out


def run_ablation(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    ap = AblationParams.from_json(params)
    base = ap.resolved(project)  # checks every value first, the groups included
    groups, scheme = ap.group_fields(project), ap.chosen_scheme()
    ir = load_image_run(project, int(base["image_run"]))
    configs = configurations(base["clinical"], groups, scheme, base["mode"])
    n_boot, seed = int(base["n_boot"]), int(base["seed"])
    rows = [image_only_row(ir, n_boot, seed)]
    for k, (name, fields) in enumerate(configs):
        ctx.check_cancelled()
        ctx.progress(k / len(configs), f"{name} ({k + 1}/{len(configs)})")
        design = build_design(project, ir, base["mode"], fields, base["learner"], base["image_input"],
                              int(base["pca"]))
        cf = cross_fit(design, ir.fold, len(ir.cv_ids), base["learner"], seed=seed)
        rows.append(table_row(name, fields, ir, cf.test_probs, n_boot, seed, cf.seconds))
    if ap.csv:
        write_csv(ap.csv, rows)
    ctx.progress(1.0, f"{len(configs)} configurations")
    return {"image_run": ir.run_id, "mode": base["mode"], "learner": base["learner"], "scheme": scheme,
            "fields": base["clinical"], "groups": groups, "rows": rows}


def image_only_row(ir: ImageRun, n_boot: int, seed: int) -> dict[str, Any]:
    rep = ev.classification_report(ir.test_y, ir.test_probs, ir.classes, n_boot=n_boot, seed=seed)
    return {"config": f"image-only (run #{ir.run_id})", "fields": [], "n": rep["n"],
            "accuracy": rep["accuracy"], "macro_auc": rep["macro"]["auc"], "vs_image": None, "fit_s": 0.0}


def table_row(name: str, fields: list[str], ir: ImageRun, probs: np.ndarray, n_boot: int, seed: int,
              seconds: float) -> dict[str, Any]:
    rep = ev.classification_report(ir.test_y, probs, ir.classes, n_boot=n_boot, seed=seed)
    return {"config": name, "fields": fields, "n": rep["n"], "accuracy": rep["accuracy"],
            "macro_auc": rep["macro"]["auc"],
            "vs_image": compare.paired(ir.test_y, ir.test_probs, probs, n_boot=n_boot, seed=seed),
            "fit_s": round(seconds, 3)}


def _ci(p: dict[str, Any] | None, signed: bool = False) -> str:
    if not p:
        return ""
    s = "+.3f" if signed else ".3f"
    return f"{p['value']:{s}} [{p['ci'][0]:{s}}, {p['ci'][1]:{s}}]"


def table_lines(rows: list[dict[str, Any]]) -> list[list[str]]:
    """Header + one row per configuration, as text (the CLI and the CSV)."""
    out = [["configuration", "n", "accuracy [95% CI]", "macro AUC [95% CI]",
            "Δ accuracy vs image [95% CI]", "McNemar p", "Δ macro AUC vs image [95% CI]"]]
    for r in rows:
        d = r["vs_image"] or {}
        out.append([r["config"], str(r["n"]), _ci(r["accuracy"]), _ci(r["macro_auc"]),
                    _ci(d.get("accuracy"), True),
                    f"{d['accuracy']['p_mcnemar']:.3g}" if d else "", _ci(d.get("macro_auc"), True)])
    return out


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(table_lines(rows))
    return path

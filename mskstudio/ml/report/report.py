"""Job ``report``: the study report of a project (HTML + CSV tables + SVG/PNG figures).

``run_report(project, {"out": DIR, "model_run_ids": [ids] | None, …}, ctx)`` writes into DIR:
``report.html``, ``tables/*.csv`` and ``figures/*``.  It includes every model run (any
kind: classifier, fusion …) whose metrics keep a hold-out with per-case probabilities,
or the runs named.  Sections: reproducibility, selection flow, cohort tables, each
run's metrics with CIs, calibration and operating point, subgroups with forest plots,
paired comparisons (DeLong, McNemar, Holm), Grad-CAM examples when cached, reader-study
results when ``mskstudio.ml.readers`` offers them, and a TRIPOD+AI / CLAIM checklist.

Reproducible: every bootstrap is seeded, tables are formatted text written in a fixed
order, SVGs carry no date; regenerating gives the same CSV bytes.  The HTML names the
project, the runs, each run's split (with a hash) and the code version.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

from mskstudio.jobs import JobContext
from mskstudio.ml.report.params import ReportParams

DEFAULTS: dict[str, Any] = ReportParams().to_json()  # defined once, in ml/report/params.py


def code_version() -> dict[str, str]:
    """mskstudio.__version__ and, in a git checkout, ``git describe --always --dirty``."""
    import subprocess

    import mskstudio

    out = {"mskstudio": mskstudio.__version__, "git": ""}
    here = Path(mskstudio.__file__).resolve().parent.parent
    try:
        res = subprocess.run(["git", "-C", str(here), "describe", "--always", "--dirty", "--tags"],
                             capture_output=True, text=True, timeout=5, check=False)
        out["git"] = res.stdout.strip() if res.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        pass
    return out


def split_hash(split_text: str | None) -> str:
    if not split_text:
        return ""
    canon = json.dumps(json.loads(split_text), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:12]


def run_report(project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    from mskstudio.ml.report.render import ReportWriter
    from mskstudio.ml.report.sections import (
        cohort_section,
        comparison_section,
        flow_section,
        gradcam_section,
        readers_section,
        run_section,
    )

    q = ReportParams.from_json(params).check(project)  # one line, before anything is written
    p = q.to_json()
    run_ids = q.run_ids(project)
    rows = {rid: project.models.get(rid) for rid in run_ids}
    w = ReportWriter(Path(p["out"]), p["figure_format"])
    ctx.progress(0.02, "attributes")
    attributes = project.cohort.attributes()
    first = rows[run_ids[0]]
    n_steps = 4 + 2 * len(run_ids)
    step = iter(range(1, n_steps + 1))

    def advance(message: str) -> None:
        ctx.check_cancelled()
        ctx.progress(next(step) / n_steps, message)

    sections: dict[str, Any] = {}
    sections["flow"] = flow_section(project, first, w)
    advance("selection flow")
    sections["cohort"] = cohort_section(first, attributes, w)
    advance("cohort tables")
    runs = []
    for rid in run_ids:
        runs.append(run_section(project, rows[rid], attributes, w, p))
        advance(f"run {rid}")
    sections["runs"] = runs
    sections["comparisons"] = comparison_section(runs, w)
    advance("comparisons")
    sections["gradcam"] = [gradcam_section(project, rows[rid], w, int(p["max_cams"])) for rid in run_ids]
    for _ in run_ids:
        advance("Grad-CAM examples")
    sections["readers"] = readers_section(project, w)
    advance("reader studies")
    sections["meta"] = {
        "project": project.name, "version": code_version(),
        "runs": [{"id": rid, "name": rows[rid]["name"], "kind": rows[rid]["kind"],
                  "split_hash": split_hash(rows[rid]["split"]), "data_hash": (rows[rid]["data_hash"] or "")[:12]}
                 for rid in run_ids],
        "seed": p["seed"],
    }
    html = w.render(sections)
    ctx.progress(1.0, f"report written: {html}")
    return {"out": str(w.root), "html": str(html), "runs": run_ids, "tables": len(w.tables),
            "figures": len(w.figures)}


def pairs(items: list[Any]) -> list[tuple[Any, Any]]:
    return list(itertools.combinations(items, 2))

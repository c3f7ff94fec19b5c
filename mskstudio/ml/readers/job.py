"""The ``reader-study-analyze`` job: analysis tables and figures written to a folder.

Bootstrap intervals for κ take seconds per reader pair, so the GUI runs the analysis
as a (light, thread-lane) job and then reads the written tables and figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mskstudio.ml.readers.params import ReaderAnalysisParams, study_key

if TYPE_CHECKING:
    from mskstudio.jobs import JobContext
    from mskstudio.store import Project


def default_out(project: Project, study_name: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in study_name)
    return project.cache_path("readers", safe, "analysis.json").parent


def run_reader_analysis(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    from mskstudio.ml.readers.analysis import analyze_study, write_outputs

    q = ReaderAnalysisParams.from_json(params).check(project)
    row = project.readers.study(study_key(q.study))
    ctx.progress(0.05, f"analysing {row['name']}")
    ctx.check_cancelled()
    result = analyze_study(project, int(row["id"]), positive=q.positive, n_boot=int(q.bootstrap),
                           seed=int(q.seed), box_reference=q.box_reference)
    ctx.check_cancelled()
    ctx.progress(0.8, "writing tables and figures")
    out = Path(q.out or default_out(project, row["name"]))
    written = write_outputs(result, out)
    ctx.progress(1.0, "done")
    return {"out": str(out), "written": [str(p) for p in written], "summary": result["summary"]}


def study_results(project: Project, *, n_boot: int = 200, seed: int = 0) -> list[dict[str, Any]]:
    """Every study with answered reads: its summary and tables (data frames), for reports
    that include reader results when a project has them (empty list otherwise)."""
    from mskstudio.ml.readers.analysis import analyze_study

    out = []
    for study in project.readers.studies():
        if project.db.scalar("SELECT COUNT(*) FROM reads WHERE study_id = ? AND class_id IS NOT NULL",
                             (study["id"],)):
            result = analyze_study(project, int(study["id"]), n_boot=n_boot, seed=seed)
            out.append({"study": study["name"], "summary": result["summary"], "tables": result["tables"],
                        "roc": result["roc"]})
    return out


# The study report shows these; the raw reads stay in the CSV export (they are per case).
REPORT_TABLES = ("performance", "cohen_kappa", "fleiss_kappa", "mcnemar_vs_model", "cochran_q",
                 "reading_times", "arm_differences", "read_box_scores", "read_box_iou_summary")


def report_tables(project: Project) -> list[dict[str, Any]]:
    """The reader-study tables of the study report: ``{"title", "rows"}`` with a header row."""
    out = []
    for result in study_results(project):
        for name in REPORT_TABLES:
            frame = result["tables"].get(name)
            if frame is None or frame.empty:
                continue
            rounded = frame.round(4)
            rows = [list(rounded.columns)] + rounded.astype(object).where(rounded.notna(), None).values.tolist()
            out.append({"title": f"{result['study']}: {name.replace('_', ' ')}", "rows": rows})
    return out

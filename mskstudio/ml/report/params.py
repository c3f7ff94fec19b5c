"""Parameters of job ``report`` (the study report): defaults, checks, JSON.

``model_run_ids`` are the runs reported (stored jobs of older projects name them ``runs``);
none means every finished run whose hold-out kept per-case probabilities."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from mskstudio.ml.evaluate import dashboard_figures as dd
from mskstudio.ml.evaluate.params import RULES
from mskstudio.ml.params import JobParams, collect
from mskstudio.store import Project

FIGURE_FORMATS = ("svg", "png")


def parse_runs(value: Any) -> list[int] | None:
    """3,5,8 or [3, 5, 8] -> run ids; None or empty -> None (every eligible run)."""
    if value in (None, "", []):
        return None
    if isinstance(value, str):
        value = [v for v in value.replace(" ", "").split(",") if v]
    try:
        return [int(v) for v in value]
    except (TypeError, ValueError):
        raise ValueError(f"runs: expected run ids like 3,5,8, got {value!r}") from None


@dataclasses.dataclass(frozen=True)
class ReportParams(JobParams):
    KIND = "report"
    RENAMED = {"runs": "model_run_ids"}

    out: str | None = None           # output folder, created (required)
    model_run_ids: Any = None        # ids (list or "3,5,8"); None = every run with a hold-out report
    rule: str = "youden"             # operating-point rule where a run has none stored
    target: float | None = None      # target sensitivity / specificity for those rules
    n_boot: int = 200                # bootstrap resamples for subgroup macro AUCs
    seed: int = 0
    figure_format: str = "svg"       # svg | png
    max_cams: int = 4

    def problems(self, project: Project) -> list[str]:
        problems = collect(
            "report: --out (an output folder) is required." if not self.out else None,
            None if self.figure_format in FIGURE_FORMATS
            else f"figure_format must be svg or png, not {self.figure_format!r}.",
            None if self.rule in RULES else f"Unknown operating-point rule “{self.rule}” ({', '.join(RULES)}).",
            f"Rule {self.rule} needs a target between 0 and 1 (got {self.target})."
            if self.rule in RULES and self.rule != "youden" and self.target is not None
            and not 0 < float(self.target) <= 1 else None,
            f"The number of bootstrap resamples cannot be negative ({self.n_boot})." if int(self.n_boot) < 0
            else None)
        try:
            problems += self._run_problems(project)
        except ValueError as exc:
            problems.append(f"{exc}.")
        return problems

    def run_ids(self, project: Project) -> list[int]:
        """The runs to report: the chosen ones, or every eligible one."""
        return parse_runs(self.model_run_ids) or eligible_runs(project)

    def _run_problems(self, project: Project) -> list[str]:
        chosen = parse_runs(self.model_run_ids)
        if chosen is None:
            return [] if eligible_runs(project) else [
                "No model run with hold-out results: train a model first (or name runs with --runs)."]
        problems = []
        for rid in chosen:
            row = project.models.get(rid)
            if row is None:
                problems.append(f"runs: no model run {rid}.")
            elif not holdout_of(json.loads(row["metrics"] or "{}")):
                problems.append(f"runs: model run {rid} has no hold-out results with per-case probabilities.")
        return problems


def holdout_of(metrics: dict[str, Any]) -> dict[str, Any]:
    rep = dd.report(metrics, "holdout")
    return rep if rep.get("probs") and rep.get("image_ids") and rep.get("y_true") is not None else {}


def eligible_runs(project: Project) -> list[int]:
    """Finished model runs of any kind with a hold-out report that kept per-case probabilities."""
    out = []
    for row in project.models.list():
        if row["status"] == "done" and row["metrics"] and holdout_of(json.loads(row["metrics"])):
            out.append(int(row["id"]))
    return sorted(out)

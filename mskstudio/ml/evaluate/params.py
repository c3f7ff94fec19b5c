"""Parameters of job ``operating-point`` (temperature and threshold of a run, chosen on
validation): defaults, checks, JSON.  Stored jobs of older projects name the run ``run``."""

from __future__ import annotations

import dataclasses

from mskstudio.ml.params import JobParams, collect, model_run_problem
from mskstudio.store import Project

RULES = ("youden", "sensitivity", "specificity")  # how a decision threshold is chosen on validation


@dataclasses.dataclass(frozen=True)
class OperatingPointParams(JobParams):
    KIND = "operating-point"
    RENAMED = {"run": "model_run_id"}

    model_run_id: int | None = None  # the run (required)
    rule: str = "youden"             # youden | sensitivity | specificity
    target: float | None = None      # target sensitivity or specificity (0-1) for those rules
    positive: str | None = None      # class scored one-vs-rest (default: the second of two)

    def problems(self, project: Project) -> list[str]:
        if self.model_run_id is None:
            return ["operating-point needs a model run id."]
        problems = collect(model_run_problem(project, self.model_run_id))
        if self.rule not in RULES:
            problems.append(f"Operating point rule must be one of {', '.join(RULES)}, not {self.rule!r}.")
        elif self.rule != "youden" and (self.target is None or not 0 < float(self.target) <= 1):
            problems.append(f"Rule {self.rule!r} needs a target between 0 and 1 (got {self.target!r}).")
        if not problems and not project.models.get(int(self.model_run_id))["metrics"]:
            problems.append(f"Model run {self.model_run_id} has no metrics.")
        return problems

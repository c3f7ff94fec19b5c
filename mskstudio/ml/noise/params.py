"""Parameters of job ``noise-queue``: the label set whose cluster labels to question, the
embedding (``run_id``: a model run id or "pixels"), an optional classifier and cluster run."""

from __future__ import annotations

import dataclasses
from typing import Any

from mskstudio.ml.params import (
    JobParams,
    cluster_run_problem,
    collect,
    label_set_problem,
    model_run_problem,
    representation_problem,
)
from mskstudio.store import Project


@dataclasses.dataclass(frozen=True)
class NoiseQueueParams(JobParams):
    KIND = "noise-queue"

    label_set: str | None = None
    run_id: Any = "pixels"
    classifier_run_id: int | None = None
    cluster_run_id: int | None = None
    k: int = 10
    limit: int = 100

    def problems(self, project: Project) -> list[str]:
        return collect(
            label_set_problem(project, self.label_set), representation_problem(project, self.run_id),
            None if self.classifier_run_id is None else
            model_run_problem(project, self.classifier_run_id, ("classifier", "fusion"),
                              what="classifier or fusion run"),
            None if self.cluster_run_id is None else cluster_run_problem(project, self.cluster_run_id),
            f"The kNN vote needs at least one neighbour (-k {self.k})." if int(self.k) < 1 else None,
            f"Show at least one image (--limit {self.limit})." if int(self.limit) < 1 else None)

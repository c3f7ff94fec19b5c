"""Parameters of jobs ``embed`` and ``eval-retrieval``, and the checks of ``similar``.

``run_id`` here is a *representation*: a model run id, or "pixels" (the baseline)."""

from __future__ import annotations

import dataclasses
from typing import Any

from mskstudio.ml.params import JobParams, collect, image_problem, label_set_problem, representation_problem
from mskstudio.store import Project


@dataclasses.dataclass(frozen=True)
class EmbedParams(JobParams):
    KIND = "embed"

    run_id: Any = "pixels"
    roi: bool = True
    backend: str = "torch"
    rebuild: bool = False

    def problems(self, project: Project) -> list[str]:
        return collect(representation_problem(project, self.run_id),
                       None if self.backend in ("torch", "onnx") else f"Unknown backend “{self.backend}”.")


@dataclasses.dataclass(frozen=True)
class EvalRetrievalParams(JobParams):
    KIND = "eval-retrieval"

    run_id: Any = None             # None: the pixel baseline only
    label_set: str = "diagnosis"
    ks: tuple[int, ...] = (1, 3, 5, 7)
    shuffles: int = 3
    seed: int = 0
    n_splits: int = 5              # 5: a fifth of the patients are queries
    roi: bool = True

    def problems(self, project: Project) -> list[str]:
        return collect(
            representation_problem(project, self.run_id), label_set_problem(project, self.label_set),
            "Evaluate on at least one shuffle (--shuffles)." if int(self.shuffles) < 1 else None,
            "Split the patients into at least 2 parts (n_splits)." if int(self.n_splits) < 2 else None,
            "Every k must be at least 1." if any(int(k) < 1 for k in self.ks) else None)


def similar_problems(project: Project, run_id: Any, image_id: Any, k: Any) -> list[str]:
    return collect(image_problem(project, image_id), representation_problem(project, run_id),
                   f"Ask for at least one similar image (-k {k})." if int(k) < 1 else None)

"""Parameters of job ``export-onnx``: a model run, the output folder, which roles."""

from __future__ import annotations

import dataclasses

from mskstudio.ml.params import JobParams, collect, model_run_problem
from mskstudio.store import Project

ROLES = ("embedder", "classifier", "segmenter")


@dataclasses.dataclass(frozen=True)
class ExportOnnxParams(JobParams):
    KIND = "export-onnx"
    RENAMED = {"run_id": "model_run_id"}

    model_run_id: int | None = None
    outdir: str | None = None
    roles: list[str] | None = None  # default: by the run's kind
    n_parity: int = 8

    def problems(self, project: Project) -> list[str]:
        return collect(
            model_run_problem(project, self.model_run_id),
            "Choose a folder to export to." if not self.outdir else None,
            next((f"Unknown role “{r}” (one of {', '.join(ROLES)})." for r in self.roles or () if r not in ROLES),
                 None))

"""Parameters of job ``reader-study-analyze``: defaults, checks, JSON.  The CLI's
``reader-study analyze`` (which analyses in its own process) checks the same object."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from mskstudio.ml.params import JobParams
from mskstudio.store import Project


def study_key(study: Any) -> str | int:
    """A study named by id ("3", 3) or by name."""
    return int(study) if str(study).isdigit() else str(study)


@dataclasses.dataclass(frozen=True)
class ReaderAnalysisParams(JobParams):
    KIND = "reader-study-analyze"

    study: Any = None                # id or name (required)
    out: str | None = None           # folder for tables and figures (default: the project's cache)
    positive: str | None = None      # class counted as positive for sensitivity (default: key 1)
    bootstrap: int = 1000            # bootstrap resamples for the kappa CIs
    seed: int = 0
    box_reference: str | None = None  # 'project' (the default) or a reader's name (box_tables checks it)

    def problems(self, project: Project) -> list[str]:
        if self.study in (None, ""):
            return ["Choose the reader study to analyse."]
        row = project.readers.study(study_key(self.study))
        if row is None:
            return [f"reader study {self.study!r}: no such study."]
        problems = []
        if int(self.bootstrap) < 1:
            problems.append(f"Use at least one bootstrap resample (--bootstrap {self.bootstrap}).")
        if self.positive is not None:
            names = {r.id: r.name for r in project.labels.classes(row["label_set_id"])}
            keys = [names.get(int(c), str(c)) for c in json.loads(row["classes"])]
            if self.positive not in keys:
                problems.append(f"--positive {self.positive!r}: not a class of the study ({', '.join(keys)}).")
        return problems

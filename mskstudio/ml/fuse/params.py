"""Parameters of jobs ``fuse``, ``ablation`` and ``shap``: defaults, checks, JSON.

``model_run_id`` is the image classifier run a fusion builds on (``fuse``, ``ablation``)
or the fusion run to explain (``shap``); stored jobs of older projects name them
``image_run`` and ``fusion_run``.  A fusion run's own stored parameters keep the key
``image_run`` (``resolved()``), which the Dashboard and ``shap`` read.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mskstudio.ml.fuse.crossfit import DEFAULT_LEARNER, LEARNERS, MODES
from mskstudio.ml.fuse.features import parse_fields
from mskstudio.ml.params import JobParams, collect, model_run_problem
from mskstudio.store import Project

IMAGE_INPUTS = ("probs", "embedding")
MAX_GROUPS = 6  # 2**6 = 64 cross-fits: minutes, not hours
SCHEMES = ("loo", "subsets", "both")


def _run_problem(project: Project, run_id: Any, kind: str, wrong_kind: str) -> str | None:
    """No such run, or a run of another kind, or one that has not finished (None = fine)."""
    problem = model_run_problem(project, run_id)
    if problem is not None:
        return problem
    run = project.models.record(int(run_id))
    if run.kind != kind:
        return wrong_kind.format(run=run_id, kind=run.kind)
    if run.status != "done":
        return f"{kind} run {run_id} is {run.status}, not finished."
    return None


def _fields_problem(spec: Any, project: Project, what: str = "") -> str | None:
    try:
        parse_fields(spec, project)
    except ValueError as exc:
        return f"{what}{exc}."
    return None


@dataclasses.dataclass(frozen=True)
class FuseParams(JobParams):
    KIND = "fuse"
    RENAMED = {"image_run": "model_run_id"}

    model_run_id: int | None = None  # finished classifier run: its folds, hold-out and scores (required)
    mode: str = "late"               # metadata | late | stacking
    clinical: Any = None             # "age,sex,lab:ALP" or a list (required)
    learner: str | None = None       # logreg | hgb | rf (default by mode: hgb, logreg, rf)
    image_input: str = "probs"       # probs (the image run's scores) | embedding (its fold models' features, PCA)
    pca: int = 16                    # components of the embeddings' PCA (fitted on each fit's training rows)
    seed: int = 0
    n_boot: int = 500
    name: str | None = None

    def problems(self, project: Project) -> list[str]:
        if self.model_run_id is None:
            return ["Choose the image classifier run to fuse with (its folds, hold-out and scores)."]
        problems = collect(
            _run_problem(project, self.model_run_id, "classifier",
                         "model run {run} is a {kind} run, not an image classifier run."),
            None if self.mode in MODES else f"unknown fusion mode {self.mode!r} (one of {', '.join(MODES)}).",
            None if self.learner in (None, *LEARNERS)
            else f"unknown learner {self.learner!r} (one of {', '.join(LEARNERS)}).",
            _fields_problem(self.clinical, project),
            None if self.image_input in IMAGE_INPUTS
            else f"unknown image input {self.image_input!r} (one of {', '.join(IMAGE_INPUTS)}).",
            f"pca must be at least 1 component, not {self.pca}." if int(self.pca) < 1 else None,
            f"The number of bootstrap resamples cannot be negative ({self.n_boot})." if int(self.n_boot) < 0
            else None)
        return problems

    def resolved(self, project: Project) -> dict[str, Any]:
        """The checked values as the fusion code and a fusion run's stored params use them."""
        self.check(project)
        return {"image_run": int(self.model_run_id), "mode": self.mode,
                "clinical": parse_fields(self.clinical, project),
                "learner": self.learner or DEFAULT_LEARNER[self.mode],
                # a metadata-only model has no image block at all
                "image_input": "probs" if self.mode == "metadata" else self.image_input,
                "pca": int(self.pca), "seed": int(self.seed),
                "n_boot": int(self.n_boot), "name": self.name}


@dataclasses.dataclass(frozen=True)
class AblationParams(FuseParams):
    KIND = "ablation"

    groups: Any = None               # a few fields whose every subset is fitted (at most MAX_GROUPS)
    scheme: str | None = None        # loo | subsets | both (default: both with groups, else loo)
    csv: str | None = None           # also write the table here

    def problems(self, project: Project) -> list[str]:
        problems = super().problems(project)
        if self.scheme not in (None, *SCHEMES):
            problems.append(f"Unknown ablation scheme “{self.scheme}” (loo, subsets or both).")
        if self.groups:
            problem = _fields_problem(self.groups, project, "groups: ")
            if problem:
                problems.append(problem)
            elif len(parse_fields(self.groups, project)) > MAX_GROUPS:
                n = len(parse_fields(self.groups, project))
                problems.append(f"{n} groups make {2 ** n} subsets; choose at most {MAX_GROUPS}.")
        elif self.scheme in ("subsets", "both"):
            problems.append("Subsets need a few chosen groups (e.g. --groups age,lab:ALP,lab:LDH).")
        return problems

    def group_fields(self, project: Project) -> list[str]:
        return parse_fields(self.groups, project) if self.groups else []

    def chosen_scheme(self) -> str:
        return self.scheme or ("both" if self.groups else "loo")


@dataclasses.dataclass(frozen=True)
class ShapParams(JobParams):
    KIND = "shap"
    RENAMED = {"fusion_run": "model_run_id"}

    model_run_id: int | None = None  # the fusion run to explain (required)

    def problems(self, project: Project) -> list[str]:
        if self.model_run_id is None:
            return ["Choose the fusion run to explain (mskstudio fuse makes one)."]
        return collect(_run_problem(project, self.model_run_id, "fusion",
                                    "model run {run} is not a fusion run (mskstudio fuse makes one)."))

"""Parameters of job ``train`` (a classifier on a label set): defaults, checks, JSON.

The one place that defines training defaults: ``ml.classify.train`` fills a job's
missing values from ``TrainParams()``, ``cli/cmd_train.py`` shows them as option
defaults and the train dialog starts from them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mskstudio.domain import LabelClass
from mskstudio.ml.params import (
    JobParams,
    collect,
    label_set_row,
    model_run_problem,
    start_point_problem,
    target_label_set_problem,
)
from mskstudio.ml.roi import MARGIN as ROI_MARGIN
from mskstudio.store import Project

TRAIN_SOURCES = ("human", "import", "cluster")  # model labels never become targets
HOLDOUTS = ("random", "centre", "none")
INPUTS = ("image", "roi")
OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("cosine", "step", "none")
LOSS_WEIGHTINGS = ("none", "inverse", "median")
REJECTS = ("auto", "class", "threshold", "none")


@dataclasses.dataclass(frozen=True)
class TrainParams(JobParams):
    KIND = "train"

    label_set: Any = None          # name or id (required)
    arch: str = "resnet18"         # resnet18 | resnet50 | efficientnet_b0 | swin_t | tinycnn
    init: Any = "scratch"          # scratch | run:<id> (DeepCluster backbone) | path to a weights file
    freeze_encoder: bool = False
    input: str = "image"           # image (letterboxed) | roi (square around mask/box + margin)
    roi_margin: float = ROI_MARGIN
    size: int = 224
    k: int = 5
    holdout: str = "random"        # random | centre | none
    test_fraction: float = 0.2
    test_centre: str | None = None
    external_centres: list[str] | None = None  # one external test set per centre, beside the hold-out
    epochs: int = 20
    batch_size: int = 32
    optimizer: str = "adam"        # adam | sgd
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"       # cosine | step | none
    step_size: int = 10
    gamma: float = 0.1
    loss_weighting: str = "none"   # none | inverse | median
    patience: int = 5              # epochs without validation improvement before stopping
    monitor: str = "val_loss"      # val_loss (with mask guidance: + weight x val attention) | val_acc
    augment: bool = True
    mask_guidance: float = 0.0     # weight of the mask-guided attention term (0 = off; mask_guidance.py)
    reject: str = "auto"           # auto | class | threshold | none
    reject_quantile: float = 0.05  # threshold = this quantile of validation max-softmax
    cascade: str | None = None     # name of the healthy class -> two-stage cascade
    cascade_threshold: float = 0.5
    n_boot: int = 500
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    image_ids: list[int] | None = None
    # Leave out images whose header says BurnedInAnnotation YES (text or markers in the pixels,
    # which a network can learn as a shortcut).  Off by default: lead L/R markers are burned
    # into nearly every radiograph (and every phantom), so "on" would empty most archives;
    # turn it on where names, dates or measurements are burned in.
    exclude_burned_in: bool = False
    clinical: Any = None           # joint fusion: clinical fields ("age,sex,lab:ALP" or a list) -> metadata MLP
    name: str | None = None
    resume: int | None = None      # model run id of a classifier run to continue

    def problems(self, project: Project) -> list[str]:
        """What makes these parameters impossible for this project (empty list = fine)."""
        if self.resume:
            return self._resume_problems(project)
        problems = collect(
            _choice(self.holdout, HOLDOUTS, "hold-out"), _choice(self.input, INPUTS, "input"),
            _choice(self.optimizer, OPTIMIZERS, "optimiser"), _choice(self.schedule, SCHEDULES, "schedule"),
            _choice(self.loss_weighting, LOSS_WEIGHTINGS, "loss weighting"),
            _choice(self.reject, REJECTS, "reject rule"))
        problem = target_label_set_problem(project, self.label_set)
        row = None if problem else label_set_row(project, self.label_set)
        if problem:
            problems.append(problem)
        class_rows, n_patients = (_labelled_classes(project, row, exclude_burned_in=bool(self.exclude_burned_in))
                                  if row is not None else ([], 0))
        if row is not None and len(class_rows) < 2:
            problems.append(f"“{row['name']}” needs labelled images of at least two classes "
                            f"(it has {len(class_rows)}).")
        k = int(self.k)
        if k < 2:
            problems.append(f"{k} folds: every model here is validated on patients it never trained on, so "
                            "cross-validation needs at least 2 folds (5 is usual).")
        elif row is not None and n_patients and k > n_patients:
            problems.append(f"{k} folds need at least {k} patients with labels; there are {n_patients}.")
        if int(self.epochs) < 1:
            problems.append("Train for at least one epoch.")
        if int(self.batch_size) < 1:
            problems.append("The batch size must be at least 1.")
        if int(self.size) < 32:
            problems.append(f"The input size must be at least 32 pixels (not {self.size}).")
        if float(self.lr) <= 0:
            problems.append("The learning rate must be positive.")
        if self.holdout == "random":
            if not 0 < float(self.test_fraction) < 1:
                problems.append("The hold-out fraction must be between 0 and 1.")
        elif self.holdout == "centre":
            problems += collect(_centre_problem(project, self.test_centre))
        for centre in self.external_centres or ():
            if centre == self.test_centre:
                problems.append(f"Centre “{centre}” cannot be both the hold-out and an external test set.")
            elif (problem := _centre_problem(project, centre)) is not None:
                problems.append(problem.replace("A centre hold-out", "An external test set"))
        if (problem := start_point_problem(project, self.init)) is not None:
            problems.append(problem)
        if self.freeze_encoder and self.init in (None, "", "scratch"):
            problems.append("A frozen encoder needs pretrained weights (a DeepCluster run or a weights "
                            "file); a frozen random encoder cannot learn.")
        guidance = float(self.mask_guidance or 0)
        if guidance < 0:
            problems.append(f"The mask guidance must be 0 (off) or positive, not {self.mask_guidance}.")
        elif guidance > 0 and not project.annotations.images_with_masks():
            problems.append("Mask guidance needs lesion masks; none are drawn or imported yet.")
        names = [r.name for r in class_rows]
        if self.cascade and class_rows and self.cascade not in names:
            problems.append(f"Cascade: “{self.cascade}” is not a labelled class of the label set.")
        elif self.cascade and class_rows and len(class_rows) < 3:
            problems.append("A cascade needs the healthy class and at least two other classes.")
        if self.clinical:
            problems += _joint_problems(project, self)
        if self.reject == "class" and class_rows and not any(r.is_reject for r in class_rows):
            problems.append("Reject = class needs a labelled reject class in the label set; "
                            "choose auto or threshold.")
        return problems

    def _resume_problems(self, project: Project) -> list[str]:
        problem = model_run_problem(project, self.resume, ("classifier",), what="classifier run")
        if problem is None and project.models.get(int(self.resume))["status"] == "done":
            problem = f"Model run {self.resume} is already finished."
        return collect(problem)


def _joint_problems(project: Project, p: TrainParams) -> list[str]:
    from mskstudio.ml.fuse.features import parse_fields

    problems = []
    try:
        parse_fields(p.clinical, project)
    except ValueError as exc:
        problems.append(f"{str(exc)[0].upper()}{str(exc)[1:]}.")
    if p.cascade:
        problems.append("Joint fusion with a two-stage cascade is not available yet.")
    if float(p.mask_guidance or 0) > 0:
        problems.append("Joint fusion with mask guidance is not available yet.")
    return problems


def _choice(value: Any, allowed: tuple[str, ...], what: str) -> str | None:
    return None if value in allowed else f"Unknown {what} “{value}” (one of {', '.join(allowed)})."


def _labelled_classes(project: Project, row, *, exclude_burned_in: bool = False) -> tuple[list[LabelClass], int]:
    """(class rows with training labels, patients with training labels) of a label set."""
    labels = project.labels.effective(int(row["id"]), sources=TRAIN_SOURCES)
    if exclude_burned_in:
        burned = project.images.burned_in_ids()
        labels = {i: c for i, c in labels.items() if i not in burned}
    counts: dict[int, int] = {}
    for c in labels.values():
        counts[c] = counts.get(c, 0) + 1
    class_rows = [r for r in project.labels.classes(int(row["id"])) if r.id in counts]
    n_patients = len(set(project.images.patient_of(list(labels)).values())) if labels else 0
    return class_rows, n_patients


def _centre_problem(project: Project, centre: str | None) -> str | None:
    centres = sorted({r["centre"] for r in project.images.table() if r["centre"]})
    if not centre:
        return "A centre hold-out needs the centre to hold out."
    if centre not in centres:
        return f"No image comes from centre “{centre}”."
    if len(centres) < 2:
        return "Holding out the only centre leaves nothing to train on."
    return None


@dataclasses.dataclass(frozen=True)
class PredictParams(JobParams):
    KIND = "predict"
    RENAMED = {"model_run": "model_run_id"}

    model_run_id: int | None = None
    image_ids: list[int] | None = None
    label: bool = True             # also write the predictions as 'model' labels
    batch_size: int = 32
    device: str | None = None

    def problems(self, project: Project) -> list[str]:
        return collect(model_run_problem(project, self.model_run_id, ("classifier", "fusion"),
                                         what="classifier or fusion run"))


@dataclasses.dataclass(frozen=True)
class ExplainParams(JobParams):
    KIND = "explain"
    RENAMED = {"model_run": "model_run_id"}

    model_run_id: int | None = None
    image_ids: list[int] | None = None
    class_id: int | None = None
    method: str = "gradcam"
    layer: str | None = None
    scales: Any = None

    def problems(self, project: Project) -> list[str]:
        return collect(model_run_problem(project, self.model_run_id, ("classifier",), what="classifier run"))


@dataclasses.dataclass(frozen=True)
class PointingGameParams(JobParams):
    KIND = "pointing-game"
    RENAMED = {"model_run": "model_run_id"}

    model_run_id: int | None = None
    tolerance_mm: float | None = None
    only_correct: bool = True
    layer: str | None = None
    scales: Any = None

    def problems(self, project: Project) -> list[str]:
        problems = collect(model_run_problem(project, self.model_run_id, ("classifier",), what="classifier run"))
        if self.tolerance_mm is not None and float(self.tolerance_mm) < 0:
            problems.append("The tolerance cannot be negative.")
        return problems

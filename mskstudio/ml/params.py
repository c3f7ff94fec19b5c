"""One parameter object per job kind: defaults, validation against the project, JSON.

The base ``JobParams`` is in ``mskstudio.jobs`` (below the store, so the io kinds have
parameter objects too); this module re-exports it with the checks ml kinds share.

A job kind's parameters are a frozen dataclass (``TrainParams``, ``ClusterParams`` …)
whose field defaults are the only defaults there are: the CLI reads its option
defaults from it, the dialogs their initial values, and the job fills what a caller
left out from it.  ``problems(project)`` says in plain words what makes the values
impossible for this project (empty list = fine); ``check(project)`` raises them as
one ValueError.  ``jobrun.check_params`` runs the check before a job row is written
(CLI) and the job function runs it again before it writes any run row (GUI, resume),
so a bad value gets the same message everywhere, before anything is stored.

``RENAMED`` maps old parameter names still found in stored job rows of older projects
to today's (e.g. ``model_run`` -> ``model_run_id``), so an old row still runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mskstudio.domain import is_truth_set
from mskstudio.jobs import JobParams as JobParams  # re-exported: the base is on the ground floor
from mskstudio.store import Project


# ---- checks shared by several kinds -------------------------------------------------------------
def label_set_row(project: Project, key: Any):
    """The label set row named ``key`` (or with id ``key``), or None."""
    for r in project.labels.label_sets():
        if str(r["id"]) == str(key) or r["name"] == key:
            return r
    return None


def target_label_set_problem(project: Project, key: Any, *, required: bool = True) -> str | None:
    """Why ``key`` cannot be a training target or a labelling target (None = fine)."""
    if key in (None, ""):
        return "Choose a label set to train on." if required else None
    row = label_set_row(project, key)
    if row is None:
        return f"There is no label set “{key}”."
    if is_truth_set(row["name"]):
        return f"“{row['name']}” holds ground truth for scoring only; it cannot be a training target."
    return None


def model_run_problem(project: Project, run_id: Any, kinds: tuple[str, ...] = (), *,
                      what: str = "model run", finished: bool = False) -> str | None:
    """Why ``run_id`` does not name a usable model run (None = fine)."""
    try:
        run = project.models.record(int(run_id))
    except (TypeError, ValueError):
        run = None
    if run is None:
        return f"There is no {what} {run_id}."
    if kinds and run.kind not in kinds:
        return f"Model run {run_id} is a {run.kind} run, not a {' or '.join(kinds)} run."
    if finished and run.status != "done":
        return f"Model run {run_id} has not finished (status {run.status})."
    return None


def cluster_run_problem(project: Project, run_id: Any) -> str | None:
    try:
        row = project.clusters.run(int(run_id))
    except (TypeError, ValueError):
        row = None
    return f"There is no cluster run {run_id}." if row is None else None


def start_point_problem(project: Project, init: Any, *, allow_auto: bool = False) -> str | None:
    """Why ``init`` (scratch | run:ID | weights file; ``auto`` where the kind has it) cannot
    start a training (None = fine)."""
    if isinstance(init, str) and init.startswith("run:"):
        try:
            parent = project.models.get(int(init[4:]))
        except ValueError:
            parent = None
        if parent is None or parent["kind"] != "deepcluster" or parent["status"] != "done":
            return f"{init} is not a finished DeepCluster run."
    elif init == "auto" and allow_auto:
        return None
    elif init not in (None, "", "scratch") and not Path(str(init)).is_file():
        return f"Weights file not found: {init}"
    return None


def training_problems(*, epochs: Any = 1, batch_size: Any = 1, lr: Any = 1.0, size: Any = None,
                      min_size: int = 32, min_batch: int = 1) -> list[str]:
    """The checks every trainer shares, in the words of the train dialog."""
    return collect(
        "Train for at least one epoch." if int(epochs) < 1 else None,
        f"The batch size must be at least {min_batch}." if int(batch_size) < min_batch else None,
        "The learning rate must be positive." if float(lr) <= 0 else None,
        f"The input size must be at least {min_size} pixels (not {size})."
        if size is not None and int(size) < min_size else None)


def fractions_problem(val_fraction: Any, test_fraction: Any) -> str | None:
    v, t = float(val_fraction), float(test_fraction)
    if not (0 <= v < 1 and 0 <= t < 1 and v + t < 1):
        return (f"The validation and test fractions ({v:g}, {t:g}) must each be in [0, 1) "
                "and leave images to train on.")
    return None


def collect(*problems: str | None) -> list[str]:
    return [p for p in problems if p]


def label_set_problem(project: Project, key: Any) -> str | None:
    """Why ``key`` names no existing label set (None = fine)."""
    if key in (None, ""):
        return "Choose a label set."
    return None if label_set_row(project, key) is not None else f"There is no label set “{key}”."


def representation_problem(project: Project, rep: Any) -> str | None:
    """Why ``rep`` (a model run id, or "pixels") cannot give embeddings (None = fine)."""
    if rep in (None, "pixels", "baseline", 0):
        return None
    return model_run_problem(project, rep)


def image_problem(project: Project, image_id: Any) -> str | None:
    try:
        found = project.images.record(int(image_id)) is not None
    except (TypeError, ValueError):
        found = False
    return None if found else f"There is no image {image_id}."

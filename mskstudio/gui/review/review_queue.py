"""Qt-free logic of the case review board: which cases to show, and in what order.

``load_cases(project, run_id)`` gathers, for one classifier run, every case that has
a prediction: the run's stored predictions (job ``predict``) first, else the
hold-out probabilities kept in the run's metrics (decided by the run's stored operating
point when it has one, else argmax).  Each case carries its
probabilities by class id and the *effective reference label* (human > import >
cluster; model labels are never a reference).

``order_cases(cases, mode)`` sorts a review queue:

* ``uncertainty`` — lowest max-probability first;
* ``error`` — only cases whose prediction differs from the label, most confident
  mistakes first (the ones most worth a second look);
* ``class`` — cases predicted as ``class_id``, least confident first;
* ``random`` — a seeded shuffle.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

MODES = (("Uncertainty (lowest max-prob first)", "uncertainty"), ("Errors (prediction ≠ label)", "error"),
         ("By predicted class", "class"), ("Random", "random"))
REFERENCE_SOURCES = ("human", "import", "cluster")


@dataclass
class ClassInfo:
    id: int
    name: str
    color: str = "#888888"


@dataclass
class Case:
    image_id: int
    pred: int                                   # predicted class id
    probs: dict[int, float] = field(default_factory=dict)
    label: int | None = None                    # effective reference label (class id)
    source: str | None = None                   # its provenance
    rejected: bool = False
    origin: str = "predictions"                 # predictions | holdout

    @property
    def confidence(self) -> float:
        return max(self.probs.values()) if self.probs else 0.0

    @property
    def is_error(self) -> bool:
        return self.label is not None and self.label != self.pred


@dataclass
class RunCases:
    run_id: int
    label_set_id: int | None
    classes: list[ClassInfo]
    cases: list[Case]

    def class_name(self, class_id: int | None) -> str:
        for c in self.classes:
            if c.id == class_id:
                return c.name
        return "—" if class_id is None else f"class {class_id}"


def classifier_runs(project) -> list[dict[str, Any]]:
    """Finished classifier runs, newest first: dicts with id, name, arch, label_set_id, init."""
    out = []
    for r in project.models.list("classifier"):
        if r["status"] != "done":
            continue
        params = project.models.params(r["id"])
        out.append({"id": int(r["id"]), "name": r["name"] or f"run {r['id']}", "arch": r["arch"],
                    "label_set_id": r["label_set_id"], "init": params.get("init", "scratch")})
    return out


def run_label(run: dict[str, Any]) -> str:
    return f"#{run['id']} {run['name']} ({run['arch']}, init {run['init']})"


def reference_labels(project, label_set_id: int | None) -> dict[int, tuple[int, str]]:
    """image id -> (class id, source) of the effective non-model label."""
    if label_set_id is None:
        return {}
    refs = project.labels.effective_with_source(label_set_id, sources=REFERENCE_SOURCES)
    return {int(k): (int(cls), source) for k, (cls, source) in refs.items()}


def load_cases(project, run_id: int) -> RunCases:
    from mskstudio.ml.classify.predict import predictions

    row = project.models.get(run_id)
    if row is None:
        raise KeyError(f"no model run {run_id}")
    ls = row["label_set_id"]
    all_classes = [ClassInfo(c.id, c.name, c.color or "#888888")
                   for c in project.labels.classes(ls)] if ls is not None else []
    by_name = {c.name: c for c in all_classes}
    metrics = project.models.metrics(run_id)
    names = metrics.get("classes") or []
    run_classes = [by_name[n] for n in names if n in by_name] or all_classes
    refs = reference_labels(project, ls)
    cases: dict[int, Case] = {}
    for p in predictions(project, run_id):
        cases[int(p["image_id"])] = Case(int(p["image_id"]), int(p["class_id"]),
                                         {int(k): float(v) for k, v in p["probs"].items()},
                                         rejected=bool(p["rejected"]))
    hold = metrics.get("holdout") or {}
    hold_names = hold.get("classes") or names
    if hold.get("image_ids") and hold.get("probs"):
        ids_of = [by_name[n].id if n in by_name else None for n in hold_names]
        hold_probs, decided = _decide(hold["probs"], hold_names, metrics.get("operating_point"))
        for k, (image_id, probs) in enumerate(zip(hold["image_ids"], hold_probs, strict=False)):
            if int(image_id) in cases or None in ids_of:
                continue
            pd = {cid: float(q) for cid, q in zip(ids_of, probs, strict=False)}
            pred = ids_of[int(decided[k])]
            cases[int(image_id)] = Case(int(image_id), pred, pd, origin="holdout")
    for c in cases.values():
        if c.image_id in refs:
            c.label, c.source = refs[c.image_id]
    return RunCases(int(run_id), ls, run_classes, sorted(cases.values(), key=lambda c: c.image_id))


def _decide(probs, class_names, op):
    """Hold-out probabilities and decisions: argmax, or the run's stored operating point
    (temperature-scaled, thresholded on validation: mskstudio operating-point)."""
    import numpy as np

    p = np.asarray(probs, float)
    if not op or op.get("positive") not in class_names or not len(p):
        return p, p.argmax(1) if len(p) else np.zeros(0, int)
    from mskstudio.ml.evaluate.calibration import apply_operating_point

    return apply_operating_point(p, class_names, op)


def refresh_labels(project, run_cases: RunCases) -> None:
    """Re-read the reference labels (after an accept / correction / undo)."""
    refs = reference_labels(project, run_cases.label_set_id)
    for c in run_cases.cases:
        c.label, c.source = refs.get(c.image_id, (None, None))


def order_cases(cases: list[Case], mode: str = "uncertainty", *, class_id: int | None = None,
                seed: int = 0) -> list[Case]:
    if mode == "uncertainty":
        return sorted(cases, key=lambda c: (c.confidence, c.image_id))
    if mode == "error":
        return sorted((c for c in cases if c.is_error), key=lambda c: (-c.confidence, c.image_id))
    if mode == "class":
        return sorted((c for c in cases if class_id is None or c.pred == class_id),
                      key=lambda c: (c.confidence, c.image_id))
    if mode == "random":
        out = sorted(cases, key=lambda c: c.image_id)
        random.Random(seed).shuffle(out)
        return out
    raise ValueError(f"unknown review order {mode!r}")


def cached_cam(project, run_id: int, image_id: int, scales=None):
    """The predicted class's map (default layer) that job ``explain`` cached, or None."""
    import numpy as np

    from mskstudio.ml.explain.gradcam import cam_path

    path = cam_path(project, run_id, image_id, scales=scales)
    if not path.exists():
        return None
    try:
        return np.load(path)
    except (OSError, ValueError):
        return None

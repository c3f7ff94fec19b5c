"""Study-level calls for classifiers: the detector's AP + lateral aggregation (``metrics.study_calls``,
maximum over a study's images) applied to a classifier run's stored predictions.

An image's score is the probability the run gave the "lesion" classes (every class but the
healthy one), read from ``predictions.probs``; an image's truth is its effective human/import
label in the run's label set.  Only studies whose images all have a prediction and a label
are scored, and only images outside the run's training folds (its hold-out part) unless
``all_images`` — a classifier's prediction on an image it trained on says nothing.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mskstudio.ml.detect.metrics import study_calls, youden_threshold

if TYPE_CHECKING:
    from mskstudio.store import Project


def classifier_study_calls(project: Project, run_id: int, healthy_class: str, *,
                           threshold: float | None = None, all_images: bool = False) -> dict[str, Any]:
    row = project.models.get(int(run_id))
    if row is None or row["kind"] != "classifier":
        raise ValueError(f"model run {run_id} is not a classifier run")
    ls = row["label_set_id"]
    names = {r.id: r.name for r in project.labels.classes(ls)}
    if healthy_class not in names.values():
        raise ValueError(f"no class {healthy_class!r} in the run's label set (classes: {', '.join(names.values())})")
    truth = {i: names[c] != healthy_class
             for i, c in project.labels.effective(ls, sources=("human", "import")).items()}
    scores = {}
    for r in project.models.predictions(int(run_id)):
        probs = json.loads(r["probs"]) if r["probs"] else {}
        scores[int(r["image_id"])] = float(sum(p for c, p in probs.items() if names.get(int(c)) != healthy_class))
    if not all_images:
        split = json.loads(row["split"]) if row["split"] else {}
        test = set(split.get("test", []))
        scores = {i: s for i, s in scores.items() if i in test}
    study_of = {int(r["id"]): int(r["study_id"]) for r in project.db.query("SELECT id, study_id FROM images")}
    by_study: dict[int, list[int]] = {}
    for i in study_of:
        by_study.setdefault(study_of[i], []).append(i)
    keep = {i for ims in by_study.values() if all(j in scores and j in truth for j in ims) for i in ims}
    scores = {i: s for i, s in scores.items() if i in keep}
    if not scores:
        raise ValueError(f"classifier run {run_id}: no study has a prediction and a label on every image")
    positive = {i: truth[i] for i in scores}
    thr = float(threshold) if threshold is not None else youden_threshold(scores, positive, study_of)
    out = study_calls(scores, positive, study_of, thr)
    out["threshold_from"] = "given" if threshold is not None else "Youden on these studies (optimistic)"
    return out

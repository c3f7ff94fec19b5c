"""Label-noise queue: images whose cluster-derived label looks wrong.

Three opinions per image of a label set:

* the **given** label: the cluster-derived one (source ``cluster``; of one cluster
  run if asked), else the effective non-human label;
* the **kNN vote** of its k nearest images of *other patients* in an embedding
  space (a model run, or the raw-pixel baseline), voting with their given labels;
* the **classifier** prediction of a classifier run, if any: out of sample where the
  run has it (out-of-fold and hold-out probabilities), else its stored prediction.

Score = mean over the available opinions of ``1 - p(given label)`` (kNN: the share
of neighbours that agree; classifier: its probability), so 1 means "everybody else
says something else, confidently".  The queue lists the images where at least one
opinion disagrees, highest score first; images a human already labelled are left
out.  ``review_noise_item`` records the human decision (a human label, audited).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.jobs import JobContext
from mskstudio.ml.noise.params import NoiseQueueParams
from mskstudio.ml.retrieve import embeddings as emb
from mskstudio.ml.retrieve.similar import leave_one_patient_out_knn

if TYPE_CHECKING:
    from mskstudio.store import Project


@dataclass
class NoiseItem:
    image_id: int
    given: str
    knn: str | None
    knn_agree: float | None          # share of the k neighbours with the given label
    classifier: str | None
    classifier_p_given: float | None
    score: float
    disagree: bool


def _given_labels(project: Project, set_id: int, cluster_run_id: int | None) -> dict[int, int]:
    if cluster_run_id is not None:
        return project.labels.of_run(set_id, int(cluster_run_id), source="cluster")
    given = project.labels.effective(set_id, sources=("cluster",))
    return given or project.labels.effective(set_id, sources=("import", "cluster", "model"))


def _predictions(project: Project, run_id: int, set_id: int) -> dict[int, tuple[int | None, float | None, dict]]:
    """The classifier's opinion per image, out of sample wherever the run has one.

    A classifier fits its training labels, noise included, so its stored prediction for
    a training image mostly repeats the given label.  The run's out-of-fold
    probabilities (each CV image scored by the fold that did not train on it) and its
    hold-out probabilities replace those; stored predictions remain for the rest."""
    out = {}
    for r in project.models.predictions(run_id):
        probs = {int(k): float(v) for k, v in json.loads(r["probs"]).items()} if r["probs"] else {}
        out[int(r["image_id"])] = (r["class_id"], r["confidence"], probs)
    metrics = project.models.metrics(run_id) or {}
    class_of = {r.name: r.id for r in project.labels.classes(set_id)}
    for rep in (((metrics.get("main") or {}).get("oof")) or {}, metrics.get("holdout") or {}):
        names = list(rep.get("classes") or metrics.get("classes") or [])
        if not rep.get("image_ids") or not rep.get("probs") or not all(n in class_of for n in names):
            continue  # an older run without per-image probabilities, or a cascade's reordered classes
        for image_id, row in zip(rep["image_ids"], rep["probs"], strict=True):
            probs = {class_of[n]: float(p) for n, p in zip(names, row, strict=True)}
            best = max(probs, key=probs.get)
            out[int(image_id)] = (best, probs[best], probs)
    return out


def noise_queue(project: Project, label_set: str, *, run_id: int | str | None = "pixels",
                classifier_run_id: int | None = None, cluster_run_id: int | None = None, k: int = 10,
                include_agreeing: bool = False, ctx: JobContext | None = None) -> list[NoiseItem]:
    ctx = ctx or JobContext.null()
    set_id = project.labels.label_set(label_set)
    names = {r.id: r.name for r in project.labels.classes(set_id)}
    given = _given_labels(project, set_id, cluster_run_id)
    human = project.labels.effective(set_id, sources=("human",))
    include = set(project.images.ids())
    ids = sorted(i for i in given if i in include)
    if not ids:
        return []
    y = np.asarray([given[i] for i in ids], np.int64)
    knn_p = np.full(len(ids), np.nan)
    knn_cls: list[int | None] = [None] * len(ids)
    if run_id is not None and len(ids) > 1:
        x, _ = emb.load(project, run_id, ids, ctx.sub(0.0, 0.8))
        patient = project.images.patient_of(ids)
        patients = np.asarray([patient[i] for i in ids], np.int64)
        _, rows = leave_one_patient_out_knn(x, patients, min(k, len(ids) - 1))
        for j, r in enumerate(rows):
            labs = [int(y[v]) for v in r if v >= 0]
            if not labs:
                continue
            knn_p[j] = labs.count(int(y[j])) / len(labs)
            counts = {c: labs.count(c) for c in labs}
            best = max(counts.values())
            knn_cls[j] = next(c for c in labs if counts[c] == best)
    preds = _predictions(project, int(classifier_run_id), set_id) if classifier_run_id is not None else {}
    n_classes = max(len(names), 2)
    items = []
    for j, image_id in enumerate(ids):
        if image_id in human:
            continue
        parts, disagree = [], False
        if not np.isnan(knn_p[j]):
            parts.append(1.0 - knn_p[j])
            disagree |= knn_cls[j] != y[j]
        clf_name = clf_p = None
        if image_id in preds:
            cls, conf, probs = preds[image_id]
            if probs:
                clf_p = probs.get(int(y[j]), 0.0)
            elif conf is not None:
                clf_p = float(conf) if cls == y[j] else (1.0 - float(conf)) / (n_classes - 1)
            if clf_p is not None:
                parts.append(1.0 - clf_p)
            clf_name = names.get(cls) if cls is not None else None
            disagree |= cls is not None and cls != y[j]
        if not parts:
            continue
        score = float(np.mean(parts))
        if disagree or include_agreeing:
            items.append(NoiseItem(image_id, names.get(int(y[j]), str(y[j])),
                                   names.get(knn_cls[j]) if knn_cls[j] is not None else None,
                                   None if np.isnan(knn_p[j]) else float(knn_p[j]),
                                   clf_name, clf_p, score, bool(disagree)))
    items.sort(key=lambda it: (-it.score, it.image_id))
    ctx.progress(1.0, f"{len(items)} images in the queue")
    return items


def review_noise_item(project: Project, image_id: int, label_set: str, class_name: str, *,
                      author: str | None = None, note: str | None = None) -> None:
    """The reviewer's verdict: a human label (never overwritten by machines), audited."""
    set_id = project.labels.label_set(label_set)
    class_id = project.labels.class_id(set_id, class_name)
    project.labels.set_label(int(image_id), set_id, class_id, source="human", author=author)
    project.audit("noise.review", "image", int(image_id),
                  {"label_set": label_set, "class": class_name, "note": note}, author=author)


def run_noise_queue(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Job ``noise-queue``.

    params: label_set, run_id ("pixels"), classifier_run_id, cluster_run_id, k, limit.
    """
    NoiseQueueParams.from_json(params).check(project)
    items = noise_queue(project, params["label_set"], run_id=params.get("run_id", "pixels"),
                        classifier_run_id=params.get("classifier_run_id"),
                        cluster_run_id=params.get("cluster_run_id"), k=int(params.get("k", 10)), ctx=ctx)
    limit = int(params.get("limit", 100))
    return {"n": len(items), "items": [asdict(it) for it in items[:limit]]}

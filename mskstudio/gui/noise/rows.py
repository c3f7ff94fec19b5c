"""Qt-free logic of the label-noise board: choices, job params, display rows.

The queue itself is computed by the job ``noise-queue`` (``ml.noise.run_noise_queue``),
whose result carries the items as dicts (``NoiseItem`` fields).  This module turns
them into display rows, finds what the combos offer (label sets with classes,
cluster runs, classifier runs with stored predictions) and maps keys to classes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

DEFAULT_LIMIT = 500


@dataclass
class ClassInfo:
    id: int
    name: str


@dataclass
class NoiseRow:
    image_id: int
    given: str                       # cluster-derived label (class name)
    knn: str | None = None           # kNN vote (class name)
    knn_agree: float | None = None   # share of the neighbours that agree with ``given``
    classifier: str | None = None    # classifier prediction (class name)
    classifier_conf: float | None = None   # its confidence (probability of its own class)
    classifier_p_given: float | None = None
    score: float = 0.0
    human: str | None = None         # the human label written since (class name), if any

    @property
    def reviewed(self) -> bool:
        return self.human is not None

    def knn_text(self) -> str:
        if self.knn is None:
            return "—"
        agree = "" if self.knn_agree is None else f" ({1.0 - self.knn_agree:.0%} of neighbours disagree)"
        return f"{self.knn}{agree}"

    def classifier_text(self) -> str:
        if self.classifier is None:
            return "—"
        conf = "" if self.classifier_conf is None else f" p={self.classifier_conf:.2f}"
        given = "" if self.classifier_p_given is None else f", p(given)={self.classifier_p_given:.2f}"
        return f"{self.classifier}{conf}{given}"

    def list_text(self) -> str:
        mark = f"✓ {self.human}" if self.human else "?"
        return (f"#{self.image_id}  score {self.score:.2f}   [{mark}]\n"
                f"cluster: {self.given}   kNN: {self.knn_text()}\n"
                f"classifier: {self.classifier_text()}")


def rows_from_result(result: dict[str, Any] | None) -> list[NoiseRow]:
    """Job result (``{"n", "items": [NoiseItem as dict]}``) -> display rows, queue order kept."""
    rows = []
    for it in (result or {}).get("items") or []:
        rows.append(NoiseRow(int(it["image_id"]), str(it["given"]), it.get("knn"), it.get("knn_agree"),
                             it.get("classifier"), None, it.get("classifier_p_given"),
                             float(it.get("score") or 0.0)))
    return rows


def add_classifier_confidence(project, rows: list[NoiseRow], classifier_run_id: int | None) -> None:
    """Fill ``classifier_conf`` from the run's stored predictions (one query)."""
    if classifier_run_id is None or not rows:
        return
    conf: dict[int, float] = {}
    for r in project.models.predictions(int(classifier_run_id)):
        c = r["confidence"]
        if c is None and r["probs"] and r["class_id"] is not None:
            c = json.loads(r["probs"]).get(str(r["class_id"]))
        if c is not None:
            conf[int(r["image_id"])] = float(c)
    for row in rows:
        row.classifier_conf = conf.get(row.image_id)


def refresh_human(project, rows: list[NoiseRow], label_set_id: int) -> None:
    """Re-read the human labels of the rows (after a fix, an undo or a redo)."""
    human = project.labels.effective(label_set_id, sources=("human",))
    names = {c.id: c.name for c in project.labels.classes(label_set_id)}
    for row in rows:
        cid = human.get(row.image_id)
        row.human = None if cid is None else names.get(int(cid), str(cid))


def label_sets(project) -> list[str]:
    """Image label sets with at least two classes, those holding cluster labels first."""
    clustered = project.labels.label_sets_with_source("cluster")
    sets = [r for r in project.labels.label_sets("image") if len(project.labels.classes(int(r["id"]))) >= 2]
    return [r["name"] for r in sorted(sets, key=lambda r: (int(r["id"]) not in clustered, r["name"]))]


def classes(project, label_set: str) -> list[ClassInfo]:
    set_id = project.labels.find_label_set(label_set)
    if set_id is None:
        return []
    return [ClassInfo(c.id, c.name) for c in project.labels.classes(set_id)]


def cluster_runs(project, label_set: str) -> list[tuple[int | None, str]]:
    """(run id or None, text): None = every cluster label of the set."""
    set_id = project.labels.find_label_set(label_set)
    out: list[tuple[int | None, str]] = [(None, "any cluster labels")]
    for r in project.clusters.runs():
        if r["label_set_id"] in (None, set_id):
            out.append((int(r["id"]), f"#{r['id']} k={r['k']} ({r['n_images']} images)"))
    return out


def classifier_runs(project, label_set: str) -> list[tuple[int | None, str]]:
    """(run id or None, text) of classifier and fusion runs of the set with stored predictions."""
    set_id = project.labels.find_label_set(label_set)
    out: list[tuple[int | None, str]] = [(None, "no classifier")]
    for r in [*project.models.list("classifier"), *project.models.list("fusion")]:
        if r["label_set_id"] != set_id:
            continue
        n = project.models.prediction_count(int(r["id"]))
        if n:
            out.append((int(r["id"]), f"#{r['id']} {r['name'] or r['arch']} ({n} predictions)"))
    return out


def queue_params(label_set: str, *, cluster_run_id: int | None = None, classifier_run_id: int | None = None,
                 run_id: int | str = "pixels", k: int = 10, limit: int = DEFAULT_LIMIT) -> dict[str, Any]:
    return {"label_set": label_set, "run_id": run_id, "classifier_run_id": classifier_run_id,
            "cluster_run_id": cluster_run_id, "k": int(k), "limit": int(limit)}


def key_class(classes_: list[ClassInfo], n: int) -> ClassInfo | None:
    """Key ``n`` (1–9) -> the n-th class of the set, or None."""
    return classes_[n - 1] if 1 <= n <= min(9, len(classes_)) else None


def key_legend(classes_: list[ClassInfo]) -> str:
    return "   ".join(f"{n} {c.name}" for n, c in enumerate(classes_[:9], 1))

"""Similar-case retrieval: "show me cases like this one, from other patients".

``similar(project, run_id, image_id, k)`` embeds (or reads the cached embeddings of)
every image with the run's network, searches a faiss index (``knn_index``) and
returns the k nearest images of **other patients** (over-fetch, then filter by
``patient_of``), each with its clinical context, plus the majority vote of the k
with its breakdown.  ``run_id`` may be ``"pixels"`` for the raw-pixel baseline.

Evaluation (job ``eval-retrieval``) lives in ``retrieval_eval``.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.jobs import JobContext
from mskstudio.ml.retrieve import embeddings as emb
from mskstudio.ml.retrieve.knn_index import KnnIndex
from mskstudio.ml.retrieve.params import similar_problems

if TYPE_CHECKING:
    from mskstudio.store import Project


@dataclass
class Hit:
    image_id: int
    distance: float
    patient_id: int
    pseudonym: str | None
    diagnosis: str | None
    dignity: str | None
    study_date: str | None
    centre: str | None
    label: str | None = None          # class name in the vote's label set, when one was asked


@dataclass
class Vote:
    winner: str | None
    counts: dict[str, int]
    k: int
    field: str

    @property
    def fraction(self) -> float:
        return self.counts.get(self.winner, 0) / self.k if self.k and self.winner is not None else 0.0


@dataclass
class SimilarResult:
    image_id: int
    rep: str
    hits: list[Hit]
    vote: Vote
    index: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"image_id": self.image_id, "rep": self.rep, "hits": [asdict(h) for h in self.hits],
                "vote": {**asdict(self.vote), "fraction": self.vote.fraction}, "index": self.index}


# ---- index cache --------------------------------------------------------------------------
class _Entry:
    def __init__(self, index: KnnIndex, ids: np.ndarray, patients: np.ndarray, stamp: tuple):
        self.index, self.ids, self.patients, self.stamp = index, ids, patients, stamp
        self.row = {int(i): r for r, i in enumerate(ids)}


_CACHE: dict[tuple[str, str], _Entry] = {}
_LOCK = threading.Lock()


def _stamp(project: Project, rep) -> tuple:
    path, ids_path, meta = emb.cache_files(project, rep)
    try:
        return (path.stat().st_mtime_ns, ids_path.stat().st_mtime_ns, meta.read_text())
    except OSError:
        return ()


def get_index(project: Project, rep: int | str | None, ctx: JobContext | None = None, *,
              kind: str = "auto", **kw: Any) -> _Entry:
    """The (cached) index over every non-excluded image of ``rep``; built on demand."""
    key = (str(project.root), emb.rep_key(rep))
    with _LOCK:
        x, ids = emb.load(project, rep, None, ctx, **kw)
        stamp = _stamp(project, rep)
        entry = _CACHE.get(key)
        if entry is None or entry.stamp != stamp or len(entry.ids) != len(ids):
            patient = project.images.patient_of()
            patients = np.asarray([patient[int(i)] for i in ids], np.int64)
            entry = _Entry(KnnIndex.build(x, kind=kind), ids, patients, stamp)
            _CACHE[key] = entry
        return entry


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()


def search_other_patients(index: KnnIndex, gallery_patients: np.ndarray, queries: np.ndarray,
                          query_patients: Sequence[int], k: int, *, exclude_rows: Sequence[int] | None = None
                          ) -> tuple[np.ndarray, np.ndarray]:
    """kNN rows for each query, never from the query's own patient (over-fetch then filter).

    Returns (distances [m, k], rows [m, k]); -1 / inf where fewer than k other-patient
    neighbours exist.
    """
    m = len(queries)
    out_d = np.full((m, k), np.inf, np.float32)
    out_r = np.full((m, k), -1, np.int64)
    if m == 0 or index.n == 0:
        return out_d, out_r
    per_patient = np.bincount(gallery_patients - gallery_patients.min()).max() if len(gallery_patients) else 0
    fetch = int(min(index.n, k + per_patient + 8))
    todo = np.arange(m)
    while len(todo):
        d, r = index.search(queries[todo], fetch)
        again = []
        for j, q in enumerate(todo):
            own = query_patients[q]
            skip = exclude_rows[q] if exclude_rows is not None else -1
            ok = (r[j] >= 0) & (r[j] != skip)
            ok[ok] &= gallery_patients[r[j][ok]] != own
            rows, dists = r[j][ok][:k], d[j][ok][:k]
            if len(rows) < k and fetch < index.n:
                again.append(q)
                continue
            out_r[q, :len(rows)], out_d[q, :len(rows)] = rows, dists
        todo = np.asarray(again, np.int64)
        fetch = min(index.n, fetch * 4)
    return out_d, out_r


def majority_vote(labels: Sequence[Any], field_name: str = "diagnosis") -> Vote:
    """Most frequent label among the neighbours (nearest first); a tie goes to the nearer one."""
    present = [lab for lab in labels if lab is not None]
    counts = Counter(present)
    if not counts:
        return Vote(None, {}, len(labels), field_name)
    top = max(counts.values())
    winner = next(lab for lab in present if counts[lab] == top)
    return Vote(winner, dict(counts.most_common()), len(labels), field_name)


# ---- the user-facing query -------------------------------------------------------------------
def similar(project: Project, run_id: int | str | None, image_id: int, k: int = 5, *,
            label_set: str | None = None, ctx: JobContext | None = None, **kw: Any) -> SimilarResult:
    """The k most similar images of other patients, nearest first, and their majority vote.

    The vote counts the neighbours' diagnoses, or their effective labels in
    ``label_set`` when given.  Excluded images are never returned.
    """
    problems = similar_problems(project, run_id, image_id, k)
    if problems:
        raise ValueError(" ".join(problems))
    entry = get_index(project, run_id, ctx, **kw)
    image_id = int(image_id)
    if image_id in entry.row:
        q_row = entry.row[image_id]
        query = entry.index.index.reconstruct(q_row)[None]
    else:  # an excluded image: still answer, computing its embedding on the fly
        q_row = -1
        query, _ = emb.load(project, run_id, [image_id], **kw)
    own = project.images.patient_of([image_id])[image_id]
    d, r = search_other_patients(entry.index, entry.patients, np.asarray(query, np.float32), [own], int(k),
                                 exclude_rows=[q_row])
    names = _label_names(project, label_set)
    hits = []
    clinical_cache: dict[int, dict[str, Any]] = {}
    for dist, row in zip(d[0], r[0], strict=True):
        if row < 0:
            break
        hit_id = int(entry.ids[row])
        info = project.images.record(hit_id)
        pid = int(info.patient_id)
        if pid not in clinical_cache:
            clinical_cache[pid] = project.images.clinical(pid)
        cl = clinical_cache[pid]
        hits.append(Hit(hit_id, float(dist), pid, info.pseudonym, cl.get("diagnosis"), cl.get("dignity"),
                        info.study_date, info.centre, names.get(hit_id) if names is not None else None))
    if names is not None:
        vote = majority_vote([h.label for h in hits], label_set or "label")
    else:
        vote = majority_vote([h.diagnosis for h in hits], "diagnosis")
    return SimilarResult(image_id, emb.rep_key(run_id), hits, vote,
                         {"kind": entry.index.kind, "n": entry.index.n, **_jsonable(entry.index.info)})


def _label_names(project: Project, label_set: str | None) -> dict[int, str] | None:
    if not label_set:
        return None
    set_id = project.labels.label_set(label_set)
    names = {r.id: r.name for r in project.labels.classes(set_id)}
    return {i: names[c] for i, c in project.labels.effective(set_id).items()}


def _jsonable(info: dict[str, Any]) -> dict[str, Any]:
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in info.items()}


def leave_one_patient_out_knn(x: np.ndarray, patients: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """For every row, its k nearest rows of other patients (used by the noise queue)."""
    index = KnnIndex.build(x, kind="auto")
    return search_other_patients(index, patients, x, patients.tolist(), k,
                                 exclude_rows=list(range(len(x))))

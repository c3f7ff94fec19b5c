"""Retrieval evaluation as in the seed study (job kind ``eval-retrieval``).

Patient-level stratified split (``StratifiedGroupKFold``, one fold held out as
queries, the rest is the gallery), repeated over ``shuffles`` seeds; for each
representation (a model run's embeddings and, in the same run, the raw-pixel
baseline) precision@k (the fraction of the k neighbours sharing the query's label)
and majority-vote accuracy at k = 1, 3, 5, 7.  Results carry n (queries, gallery,
patients) per shuffle and mean, sd and a t-interval over shuffles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.jobs import JobContext
from mskstudio.ml.retrieve import embeddings as emb
from mskstudio.ml.retrieve.knn_index import KnnIndex
from mskstudio.ml.retrieve.params import EvalRetrievalParams

if TYPE_CHECKING:
    from mskstudio.store import Project

KS = (1, 3, 5, 7)


def retrieval_metrics(query_labels: Sequence[int], neighbour_labels: np.ndarray,
                      ks: Sequence[int] = KS) -> dict[int, dict[str, float]]:
    """precision@k and majority-vote accuracy@k.

    ``neighbour_labels`` [m, K] holds the labels of each query's neighbours, nearest
    first (-1 = no neighbour, counted as a miss).  A vote tie goes to the tied label
    whose first neighbour is nearest.
    """
    q = np.asarray(query_labels)
    nl = np.asarray(neighbour_labels)
    out: dict[int, dict[str, float]] = {}
    for k in ks:
        top = nl[:, :k]
        precision = float((top == q[:, None]).mean()) if len(q) else float("nan")
        correct = 0
        for row, truth in zip(top, q, strict=True):
            vals = [v for v in row.tolist() if v >= 0]
            if not vals:
                continue
            counts: dict[int, int] = {}
            for v in vals:
                counts[v] = counts.get(v, 0) + 1
            best = max(counts.values())
            winner = next(v for v in vals if counts[v] == best)
            correct += int(winner == truth)
        out[int(k)] = {"precision": precision, "vote_acc": correct / len(q) if len(q) else float("nan")}
    return out


def patient_split(labels: np.ndarray, groups: np.ndarray, seed: int, n_splits: int = 5
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(gallery rows, query rows): patients never straddle; class balance kept where possible."""
    import warnings

    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

    n_groups = len(np.unique(groups))
    n_splits = max(2, min(n_splits, n_groups))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
            train, test = next(sgkf.split(np.zeros(len(labels)), labels, groups))
    except ValueError:
        gss = GroupShuffleSplit(n_splits=1, test_size=1.0 / n_splits, random_state=seed)
        train, test = next(gss.split(np.zeros(len(labels)), labels, groups))
    return train, test


def evaluate_representations(reps: dict[str, np.ndarray], labels: np.ndarray, groups: np.ndarray, *,
                             ks: Sequence[int] = KS, shuffles: int = 3, seed: int = 0, n_splits: int = 5,
                             ctx: JobContext | None = None) -> dict[str, Any]:
    ctx = ctx or JobContext.null()
    labels, groups = np.asarray(labels), np.asarray(groups)
    per: dict[str, list[dict[int, dict[str, float]]]] = {name: [] for name in reps}
    splits = []
    kmax = max(ks)
    for s in range(shuffles):
        ctx.check_cancelled()
        train, test = patient_split(labels, groups, seed + s, n_splits)
        assert not set(groups[train]) & set(groups[test])
        splits.append({"seed": seed + s, "n_gallery": int(len(train)), "n_queries": int(len(test)),
                       "patients_gallery": int(len(np.unique(groups[train]))),
                       "patients_queries": int(len(np.unique(groups[test])))})
        for name, x in reps.items():
            index = KnnIndex.build(x[train], kind="flat")
            _, rows = index.search(x[test], min(kmax, len(train)))
            nl = np.where(rows >= 0, labels[train][np.maximum(rows, 0)], -1)
            if nl.shape[1] < kmax:
                nl = np.pad(nl, ((0, 0), (0, kmax - nl.shape[1])), constant_values=-1)
            per[name].append(retrieval_metrics(labels[test], nl, ks))
        ctx.progress((s + 1) / shuffles, f"shuffle {s + 1}/{shuffles}")
    summary: dict[str, Any] = {}
    for name, runs in per.items():
        summary[name] = {}
        for k in ks:
            summary[name][f"k{k}"] = {m: _stats([r[k][m] for r in runs]) for m in ("precision", "vote_acc")}
    return {"summary": summary, "splits": splits, "ks": list(ks), "shuffles": shuffles,
            "n_images": int(len(labels)), "n_patients": int(len(np.unique(groups))),
            "class_counts": {int(c): int(n) for c, n in zip(*np.unique(labels, return_counts=True), strict=True)}}


def _stats(values: list[float]) -> dict[str, Any]:
    v = np.asarray(values, float)
    mean = float(v.mean()) if len(v) else float("nan")
    sd = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    t = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776}.get(len(v), 1.96)
    half = t * sd / math.sqrt(len(v)) if len(v) > 1 else 0.0
    return {"mean": mean, "sd": sd, "ci95": [mean - half, mean + half], "values": v.tolist()}


def run_eval_retrieval(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Job ``eval-retrieval``.

    params: run_id (None: baseline only), label_set ("diagnosis"), ks ([1,3,5,7]),
    shuffles (3), seed (0), n_splits (5, i.e. 20 % of patients are queries), roi (True).
    """
    EvalRetrievalParams.from_json(params).check(project)  # before the label set lookup creates one
    set_name = params.get("label_set", "diagnosis")
    set_id = project.labels.label_set(set_name)
    names = {r.id: r.name for r in project.labels.classes(set_id)}
    effective = project.labels.effective(set_id)
    include = set(project.images.ids())
    ids = sorted(i for i in effective if i in include)
    if len(ids) < 4:
        raise ValueError(f"label set {set_name!r}: only {len(ids)} labelled images; need at least 4")
    labels = np.asarray([effective[i] for i in ids], np.int64)
    patient = project.images.patient_of(ids)
    groups = np.asarray([patient[i] for i in ids], np.int64)
    reps: dict[str, np.ndarray] = {}
    run_id = params.get("run_id")
    if run_id not in (None, "pixels"):
        x, _ = emb.load(project, int(run_id), ids, ctx.sub(0.0, 0.6), roi=bool(params.get("roi", True)))
        reps[emb.rep_key(run_id)] = x
    x, _ = emb.load(project, "pixels", ids, ctx.sub(0.6 if reps else 0.0, 0.8))
    reps["baseline_" + emb.rep_key("pixels")] = x
    result = evaluate_representations(
        reps, labels, groups, ks=tuple(params.get("ks", KS)), shuffles=int(params.get("shuffles", 3)),
        seed=int(params.get("seed", 0)), n_splits=int(params.get("n_splits", 5)), ctx=ctx.sub(0.8, 1.0))
    result["label_set"] = set_name
    result["class_counts"] = {names.get(c, str(c)): n for c, n in result["class_counts"].items()}
    for name, per_k in result["summary"].items():
        for kname, m in per_k.items():
            ctx.metric(f"{name}.precision@{kname[1:]}", m["precision"]["mean"], 0)
            ctx.metric(f"{name}.vote_acc@{kname[1:]}", m["vote_acc"]["mean"], 0)
    return result

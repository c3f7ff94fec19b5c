"""Which cases a run got wrong, most telling first: for the Dashboard's error galleries and the report.

All functions read one scored test set of a run's metrics (``dashboard_figures.report``: a
dict with ``image_ids``, ``y_true`` as class indices and ``probs`` [n, classes]); the
prediction is the arg-max class, as everywhere else in the dashboard.

- ``wrong_cases``: every misclassified case, most confident first (P(predicted) high).
- ``false_positives`` / ``false_negatives``: one-vs-rest for a chosen class (the positive
  class of a binary run): a false positive predicted the class for a case of another class
  (highest P(class) first), a false negative missed it (lowest P(class) first, the surest miss).
- ``readers_wrong_model_right``: cases of a reader study the model got right while most of
  the readers' answers (in the first arm read without the model) were wrong.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

KINDS = ("fp", "fn", "wrong", "readers")


@dataclasses.dataclass(frozen=True)
class ErrorCase:
    image_id: int
    truth: str
    predicted: str
    p_predicted: float
    p_truth: float
    p_class: float | None = None   # P(chosen class) in the one-vs-rest views
    note: str = ""                 # e.g. "4 of 5 readers wrong"


def _scored(rep: dict[str, Any]) -> tuple[list[int], np.ndarray, np.ndarray]:
    ids = [int(i) for i in rep.get("image_ids") or []]
    y = np.asarray(rep.get("y_true") or [], int)
    probs = np.asarray(rep.get("probs") or [], float)
    if not ids or probs.ndim != 2 or len(probs) != len(ids) or len(y) != len(ids):
        return [], np.zeros(0, int), np.zeros((0, 0))
    return ids, y, probs


def _case(i: int, y: int, probs: np.ndarray, classes: list[str], positive: int | None = None,
          note: str = "") -> ErrorCase:
    pred = int(probs.argmax())
    return ErrorCase(i, classes[y], classes[pred], float(probs[pred]), float(probs[y]),
                     None if positive is None else float(probs[positive]), note)


def wrong_cases(rep: dict[str, Any], classes: list[str], limit: int | None = None) -> list[ErrorCase]:
    """Misclassified cases, most confident first (ties by image id)."""
    ids, y, probs = _scored(rep)
    pred = probs.argmax(1) if len(ids) else np.zeros(0, int)
    order = sorted((k for k in range(len(ids)) if pred[k] != y[k]), key=lambda k: (-probs[k, pred[k]], ids[k]))
    return [_case(ids[k], int(y[k]), probs[k], classes) for k in order[:limit]]


def positive_index(classes: list[str], positive: str | int | None) -> int:
    """The chosen class's index; a binary run's default is its second class (the positive one)."""
    if positive is None:
        if len(classes) != 2:
            raise ValueError("choose a class: false positives and negatives of a multi-class run "
                             "are one-vs-rest")
        return 1
    if isinstance(positive, int):
        return positive
    if positive not in classes:
        raise ValueError(f"class {positive!r} is not one of the run's classes ({', '.join(classes)})")
    return classes.index(positive)


def false_positives(rep: dict[str, Any], classes: list[str], positive: str | int | None = None,
                    limit: int | None = None) -> list[ErrorCase]:
    """Predicted ``positive`` although the truth is another class; highest P(positive) first."""
    c = positive_index(classes, positive)
    ids, y, probs = _scored(rep)
    keep = [k for k in range(len(ids)) if y[k] != c and probs[k].argmax() == c]
    keep.sort(key=lambda k: (-probs[k, c], ids[k]))
    return [_case(ids[k], int(y[k]), probs[k], classes, c) for k in keep[:limit]]


def false_negatives(rep: dict[str, Any], classes: list[str], positive: str | int | None = None,
                    limit: int | None = None) -> list[ErrorCase]:
    """Truth ``positive`` but predicted another class; lowest P(positive) first (the surest misses)."""
    c = positive_index(classes, positive)
    ids, y, probs = _scored(rep)
    keep = [k for k in range(len(ids)) if y[k] == c and probs[k].argmax() != c]
    keep.sort(key=lambda k: (probs[k, c], ids[k]))
    return [_case(ids[k], int(y[k]), probs[k], classes, c) for k in keep[:limit]]


def readers_wrong_model_right(rep: dict[str, Any], classes: list[str], reads: Iterable[Mapping[str, Any]],
                              limit: int | None = None, min_fraction: float = 0.5) -> list[ErrorCase]:
    """Cases in ``rep`` the model classified right while more than ``min_fraction`` of the readers'
    answers were wrong.  ``reads`` are rows of ``project.readers.reads(study_id)`` (``image_id``,
    ``answer`` class name, ``arm_position``, ``arm`` kind); only the first arm read without the model
    counts (the first arm of any kind when every arm is assisted),
    and the truth is the run's own (``rep['y_true']``).  Most readers wrong first."""
    ids, y, probs = _scored(rep)
    at = {i: k for k, i in enumerate(ids)}
    reads = [dict(r) for r in reads]  # sqlite3.Row has no .get
    unaided = [r for r in reads if r.get("arm") != "assisted"] or reads  # arms read without the model
    first_arm = min((int(r["arm_position"]) for r in unaided), default=0)
    answers: dict[int, list[str]] = {}
    for r in reads:
        if int(r["arm_position"]) == first_arm and int(r["image_id"]) in at and r["answer"] is not None:
            answers.setdefault(int(r["image_id"]), []).append(str(r["answer"]))
    found = []
    for image_id, given in answers.items():
        k = at[image_id]
        truth = classes[int(y[k])]
        wrong = sum(a != truth for a in given)
        if probs[k].argmax() == y[k] and wrong > min_fraction * len(given):
            found.append((-wrong / len(given), image_id, k, f"{wrong} of {len(given)} readers wrong"))
    found.sort()
    return [_case(image_id, int(y[k]), probs[k], classes, note=note) for _f, image_id, k, note in found[:limit]]


def gallery(kind: str, rep: dict[str, Any], classes: list[str], *, positive: str | int | None = None,
            reads: Iterable[Mapping[str, Any]] = (), limit: int | None = None) -> list[ErrorCase]:
    """One of ``KINDS`` by name (the Dashboard's Errors view)."""
    if kind == "fp":
        return false_positives(rep, classes, positive, limit)
    if kind == "fn":
        return false_negatives(rep, classes, positive, limit)
    if kind == "wrong":
        return wrong_cases(rep, classes, limit)
    if kind == "readers":
        return readers_wrong_model_right(rep, classes, reads, limit)
    raise ValueError(f"unknown error gallery {kind!r} (one of {', '.join(KINDS)})")

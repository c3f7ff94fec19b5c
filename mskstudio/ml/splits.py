"""Patient-level splits: a held-out test part that never touches training, then k folds.

The unit of every split is the patient (``project.images.patient_of()``): two views
of one patient in two parts would let a model recognise the patient instead of the
disease.  ``make_split`` is seeded and stratified where possible (scikit-learn's
``StratifiedGroupKFold``); ``check_split`` raises ``SplitLeak`` if any patient sits
in two parts, and every training run calls it before it trains.

A split is a JSON-able dict (stored in ``model_runs.split``)::

    {"holdout": "random" | "centre" | "none", "seed": 0, "k": 5,
     "test": [image ids], "folds": [{"train": [...], "val": [...]}, ...],
     "patients": {"<patient id>": "test" | "fold0" | "external:<centre>" …},  # fold = where it validates
     "external": {"<centre>": [image ids], …}}   # only with external_centres
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


class SplitLeak(AssertionError):
    """A patient appears in two parts of a split."""


def _sgkf_parts(ids: np.ndarray, groups: np.ndarray, y: np.ndarray | None, n: int,
                seed: int) -> list[np.ndarray]:
    """Indices of ``n`` disjoint, group-respecting, stratified (when possible) parts."""
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    n_groups = len(np.unique(groups))
    if n_groups < n:
        raise ValueError(f"{n_groups} patients cannot fill {n} parts")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "least populated class has fewer members than n_splits"
        if y is not None and len(np.unique(y)) > 1:
            splitter = StratifiedGroupKFold(n_splits=n, shuffle=True, random_state=seed)
            folds = splitter.split(ids, y, groups)
        else:
            rng = np.random.default_rng(seed)
            uniq = np.unique(groups)
            perm = {g: i for i, g in enumerate(rng.permutation(uniq))}
            shuffled = np.array([perm[g] for g in groups])
            folds = GroupKFold(n_splits=n).split(ids, None, shuffled)
        return [test for _, test in folds]


def make_split(image_ids: Sequence[int], patient_of: Mapping[int, int],
               targets: Sequence[int] | None = None, *, k: int = 5, holdout: str = "random",
               test_fraction: float = 0.2, centre_of: Mapping[int, str | None] | None = None,
               test_centre: str | None = None, external_centres: Sequence[str] | None = None,
               seed: int = 0) -> dict[str, Any]:
    """Split images by patient into a hold-out test part and ``k`` CV folds.

    ``holdout``: ``"random"`` (about ``test_fraction`` of the patients, stratified),
    ``"centre"`` (every patient with an image from ``test_centre`` — an external test),
    or ``"none"``.  ``targets`` (class index per image) stratify the parts.
    ``external_centres``: each named centre's patients become one more test set
    (``split["external"][centre]``), taken out before the hold-out and the folds, so one
    run reports an internal hold-out and one external test per held-out centre.
    """
    ids = np.asarray([int(i) for i in image_ids])
    if len(ids) == 0:
        raise ValueError("no images to split")
    groups = np.asarray([int(patient_of[int(i)]) for i in ids])
    y = np.asarray(targets) if targets is not None else None
    external: dict[str, list[int]] = {}
    assigned: dict[int, str] = {}
    if external_centres:
        if centre_of is None:
            raise ValueError("external test centres need centre_of")
        # A patient seen at several external centres joins the first of them named.
        for centre in external_centres:
            for image_id, g in zip(ids, groups, strict=True):
                if centre_of.get(int(image_id)) == centre and int(g) not in assigned:
                    assigned[int(g)] = centre
            if centre not in assigned.values():
                raise ValueError(f"no image from external centre {centre!r}")
        keep = np.array([int(g) not in assigned for g in groups])
        external = {c: [int(i) for i, g in zip(ids, groups, strict=True) if assigned.get(int(g)) == c]
                    for c in external_centres}
        ids, groups = ids[keep], groups[keep]
        y = y[keep] if y is not None else None
        if len(ids) == 0:
            raise ValueError("the external centres took every image; nothing is left to train on")
    test_mask = np.zeros(len(ids), bool)
    if holdout == "random":
        if not 0 < test_fraction < 1:
            raise ValueError("test_fraction must be between 0 and 1")
        n_parts = max(2, int(round(1.0 / test_fraction)))
        test_mask[_sgkf_parts(ids, groups, y, n_parts, seed)[0]] = True
    elif holdout == "centre":
        if centre_of is None or test_centre is None:
            raise ValueError("a centre hold-out needs centre_of and test_centre")
        in_centre = {int(groups[i]) for i, image_id in enumerate(ids)
                     if centre_of.get(int(image_id)) == test_centre}
        if not in_centre:
            raise ValueError(f"no image from centre {test_centre!r}")
        # The whole patient goes to the test part, even views taken elsewhere.
        test_mask = np.isin(groups, list(in_centre))
    elif holdout != "none":
        raise ValueError(f"unknown hold-out {holdout!r} (random, centre or none)")
    rest = np.flatnonzero(~test_mask)
    if len(rest) == 0:
        raise ValueError("the hold-out took every image; nothing is left to train on")
    k = int(k)
    if k < 2:
        raise ValueError("k must be at least 2")
    parts = _sgkf_parts(ids[rest], groups[rest], None if y is None else y[rest], k, seed + 1)
    folds = []
    patients: dict[str, str] = {str(int(g)): "test" for g in groups[test_mask]}
    for f, part in enumerate(parts):
        val_idx = rest[part]
        train_idx = np.setdiff1d(rest, val_idx)
        folds.append({"train": [int(i) for i in ids[train_idx]], "val": [int(i) for i in ids[val_idx]]})
        patients.update({str(int(g)): f"fold{f}" for g in groups[val_idx]})
    patients.update({str(g): f"external:{c}" for g, c in assigned.items()})
    split = {"holdout": holdout, "seed": int(seed), "k": k, "test_centre": test_centre,
             "test": [int(i) for i in ids[test_mask]], "folds": folds, "patients": patients}
    if external:
        split["external"] = external
    check_split(split, patient_of)
    return split


def check_split(split: Mapping[str, Any], patient_of: Mapping[int, int]) -> None:
    """Raise ``SplitLeak`` if a patient is in two parts (not an ``assert``: survives ``-O``)."""
    def pats(ids):
        return {int(patient_of[int(i)]) for i in ids}

    test = pats(split["test"])
    seen_val: set[int] = set()
    all_cv_images: set[int] = set()
    for f, fold in enumerate(split["folds"]):
        tr, va = pats(fold["train"]), pats(fold["val"])
        if tr & va:
            raise SplitLeak(f"fold {f}: patients {sorted(tr & va)[:5]} in train and validation")
        if (tr | va) & test:
            raise SplitLeak(f"fold {f}: patients {sorted((tr | va) & test)[:5]} also in the test part")
        if va & seen_val:
            raise SplitLeak(f"fold {f}: patients {sorted(va & seen_val)[:5]} validate in two folds")
        seen_val |= va
        images = set(fold["train"]) | set(fold["val"])
        if all_cv_images and images != all_cv_images:
            raise SplitLeak(f"fold {f} does not cover the same images as fold 0")
        all_cv_images = images
        if set(fold["train"]) & set(fold["val"]):
            raise SplitLeak(f"fold {f}: an image is in train and validation")
    if set(split["test"]) & all_cv_images:
        raise SplitLeak("an image is in the test part and in cross-validation")
    used = test | {int(patient_of[int(i)]) for i in all_cv_images}
    for centre, ext_ids in (split.get("external") or {}).items():
        ext = pats(ext_ids)
        if ext & used:
            raise SplitLeak(f"external test {centre!r}: patients {sorted(ext & used)[:5]} also elsewhere")
        used |= ext


def split_summary(split: Mapping[str, Any], patient_of: Mapping[int, int],
                  targets_of: Mapping[int, int] | None = None) -> dict[str, Any]:
    """n images / patients (and class counts) per part, for the run record and the GUI."""
    def part(ids):
        out: dict[str, Any] = {"images": len(ids), "patients": len({patient_of[int(i)] for i in ids})}
        if targets_of is not None:
            counts: dict[str, int] = {}
            for i in ids:
                key = str(targets_of[int(i)])
                counts[key] = counts.get(key, 0) + 1
            out["classes"] = counts
        return out

    return {"test": part(split["test"]),
            "folds": [{"train": part(f["train"]), "val": part(f["val"])} for f in split["folds"]]}

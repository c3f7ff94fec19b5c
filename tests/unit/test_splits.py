"""Patient-level splits: no patient in two parts, external-centre hold-out, stratification."""

from __future__ import annotations

import numpy as np
import pytest

from mskstudio.ml.splits import SplitLeak, check_split, make_split


def _cohort(n_images=90, per_patient=3, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    ids = list(range(1, n_images + 1))
    patient_of = {i: (i - 1) // per_patient for i in ids}
    patient_class = {p: int(rng.integers(0, n_classes)) for p in set(patient_of.values())}
    targets = [patient_class[patient_of[i]] for i in ids]
    return ids, patient_of, targets


def _parts(split, patient_of):
    test = {patient_of[i] for i in split["test"]}
    return test, [({patient_of[i] for i in f["train"]}, {patient_of[i] for i in f["val"]})
                  for f in split["folds"]]


def test_random_holdout_has_no_patient_in_two_parts():
    ids, patient_of, targets = _cohort()
    split = make_split(ids, patient_of, targets, k=5, test_fraction=0.2, seed=3)
    test, folds = _parts(split, patient_of)
    assert 0.1 < len(split["test"]) / len(ids) < 0.3
    vals = set()
    for train, val in folds:
        assert not train & val and not (train | val) & test
        assert not val & vals
        vals |= val
    assert vals | test == set(patient_of.values())
    assert set(split["patients"]) == {str(p) for p in patient_of.values()}
    # seeded: the same split again
    assert make_split(ids, patient_of, targets, k=5, seed=3) == split
    assert make_split(ids, patient_of, targets, k=5, seed=4) != split


def test_stratified_folds_see_every_class():
    ids, patient_of, targets = _cohort(n_images=150)
    split = make_split(ids, patient_of, targets, k=3, seed=0)
    t = dict(zip(ids, targets, strict=True))
    for fold in split["folds"]:
        assert {t[i] for i in fold["val"]} == {0, 1, 2}
    assert {t[i] for i in split["test"]} == {0, 1, 2}


def test_external_centre_holdout_takes_whole_patients():
    ids, patient_of, targets = _cohort()
    # Centre B holds patients 0..9, but patient 3 also has a view taken in centre A.
    centre_of = {i: ("B" if patient_of[i] < 10 else "A") for i in ids}
    first_of_3 = min(i for i in ids if patient_of[i] == 3)
    centre_of[first_of_3] = "A"
    split = make_split(ids, patient_of, targets, k=4, holdout="centre", centre_of=centre_of,
                       test_centre="B", seed=0)
    test, folds = _parts(split, patient_of)
    assert test == set(range(10))
    assert first_of_3 in split["test"]  # the whole patient, not only the centre-B views
    for train, val in folds:
        assert not (train | val) & test and not train & val


def test_check_split_catches_a_leak():
    ids, patient_of, targets = _cohort()
    split = make_split(ids, patient_of, targets, k=3, seed=0)
    leaky = {**split, "folds": [dict(f) for f in split["folds"]]}
    # move one image of a test patient into fold 0's training part
    leaky["folds"][0]["train"] = leaky["folds"][0]["train"] + [split["test"][0]]
    with pytest.raises(SplitLeak):
        check_split(leaky, patient_of)
    # an image of a validation patient in training
    leaky = {**split, "folds": [dict(f) for f in split["folds"]]}
    val_patient = patient_of[split["folds"][1]["val"][0]]
    other = [i for i in ids if patient_of[i] == val_patient and i != split["folds"][1]["val"][0]]
    leaky["folds"][1]["val"] = [i for i in split["folds"][1]["val"] if i not in other]
    leaky["folds"][1]["train"] = split["folds"][1]["train"] + other
    with pytest.raises(SplitLeak):
        check_split(leaky, patient_of)


def test_bad_arguments():
    ids, patient_of, targets = _cohort(n_images=6)
    with pytest.raises(ValueError):
        make_split(ids, patient_of, targets, k=1)
    with pytest.raises(ValueError):
        make_split(ids, patient_of, targets, holdout="centre")


def test_external_centres_become_separate_test_sets():
    ids = list(range(120))
    patient_of = {i: i // 2 for i in ids}
    centre_of = {i: ("A", "B", "C", "D")[(i // 2) % 4] for i in ids}
    centre_of[5] = "C"  # patient 2 (images 4, 5) seen at B and C: it joins the first centre named
    targets = [i % 3 for i in ids]
    split = make_split(ids, patient_of, targets, k=3, holdout="random", centre_of=centre_of,
                       external_centres=["C", "D"], seed=0)
    assert set(split["external"]) == {"C", "D"}
    assert set(split["external"]["C"]) == {i for i in ids if centre_of[i] == "C"} | {4}
    assert all(centre_of[i] == "D" for i in split["external"]["D"])
    cv = {i for f in split["folds"] for i in f["val"]}
    inside = set(split["test"]) | cv
    assert inside.isdisjoint(split["external"]["C"]) and inside.isdisjoint(split["external"]["D"])
    assert inside | set(split["external"]["C"]) | set(split["external"]["D"]) == set(ids)
    assert split["patients"]["2"] == "external:C"
    leaky = {**split, "external": {**split["external"], "D": [*split["external"]["D"], split["test"][0]]}}
    with pytest.raises(SplitLeak, match="external test 'D'"):
        check_split(leaky, patient_of)
    with pytest.raises(ValueError, match="no image from external centre 'Z'"):
        make_split(ids, patient_of, targets, k=3, centre_of=centre_of, external_centres=["Z"])

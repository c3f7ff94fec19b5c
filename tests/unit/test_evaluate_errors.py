"""Error galleries (ml.evaluate.errors): counts against scikit-learn's confusion matrix, order, readers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix

from mskstudio.ml.evaluate import errors
from mskstudio.ml.report.sections import error_rows


def _rep(n=80, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return {"image_ids": [int(i) for i in rng.permutation(1000)[:n]], "y_true": y.tolist(),
            "probs": probs.tolist()}


@pytest.mark.parametrize("k", [2, 3])
def test_counts_match_the_confusion_matrix(k):
    rep = _rep(k=k)
    classes = [f"c{j}" for j in range(k)]
    cm = confusion_matrix(rep["y_true"], np.asarray(rep["probs"]).argmax(1), labels=list(range(k)))
    assert len(errors.wrong_cases(rep, classes)) == cm.sum() - np.trace(cm) > 0
    for c in range(k):
        fp = errors.false_positives(rep, classes, classes[c])
        fn = errors.false_negatives(rep, classes, c)
        assert len(fp) == cm[:, c].sum() - cm[c, c]
        assert len(fn) == cm[c, :].sum() - cm[c, c]
        assert all(e.predicted == classes[c] != e.truth for e in fp)
        assert all(e.truth == classes[c] != e.predicted for e in fn)
        # surest first: FP by falling P(class), FN by rising P(class)
        assert [e.p_class for e in fp] == sorted((e.p_class for e in fp), reverse=True)
        assert [e.p_class for e in fn] == sorted(e.p_class for e in fn)


def test_binary_default_positive_and_multiclass_needs_a_class():
    rep2, rep3 = _rep(k=2), _rep(k=3)
    assert errors.false_positives(rep2, ["neg", "pos"]) == errors.false_positives(rep2, ["neg", "pos"], "pos")
    with pytest.raises(ValueError, match="one-vs-rest"):
        errors.false_negatives(rep3, ["a", "b", "c"])
    with pytest.raises(ValueError, match="not one of"):
        errors.gallery("fp", rep3, ["a", "b", "c"], positive="zzz")


def test_wrong_cases_most_confident_first_and_the_report_shares_them():
    rep = _rep(k=3, seed=4)
    classes = ["a", "b", "c"]
    wrong = errors.wrong_cases(rep, classes, limit=5)
    assert [w.p_predicted for w in wrong] == sorted((w.p_predicted for w in wrong), reverse=True)
    probs = np.asarray(rep["probs"])
    k = rep["image_ids"].index(wrong[0].image_id)
    assert wrong[0].p_predicted == pytest.approx(probs[k].max())
    assert wrong[0].p_predicted == pytest.approx(max(probs[j].max() for j in range(len(probs))
                                                     if probs[j].argmax() != rep["y_true"][j]))
    rows = error_rows(rep, classes, limit=5)
    assert [r[0] for r in rows[1:]] == [f"#{w.image_id}" for w in wrong]


def test_readers_wrong_model_right():
    rep = {"image_ids": [10, 11, 12, 13], "y_true": [0, 1, 1, 0],
           "probs": [[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]]}
    classes = ["normal", "fracture"]

    def read(image, answer, arm=0):
        return {"image_id": image, "answer": answer, "arm_position": arm}

    reads = [read(10, "fracture"), read(10, "fracture"), read(10, "normal"),   # model right, 2/3 wrong
             read(11, "normal"), read(11, "fracture"),                          # 1/2: not most
             read(12, "normal"), read(12, "normal"),                            # model wrong too
             read(13, "fracture"), read(13, "fracture"),                        # model right, 2/2 wrong
             read(11, "normal", arm=1), read(11, "normal", arm=1),              # aided arm ignored
             read(99, "fracture")]                                               # not in the hold-out
    assisted_first = [{**r, "arm": "assisted", "arm_position": 0} for r in reads[:3]]
    shifted = [{**r, "arm": "image", "arm_position": r["arm_position"] + 1} for r in reads]
    got = errors.gallery("readers", rep, classes, reads=reads)
    assert [(g.image_id, g.note) for g in got] == [(13, "2 of 2 readers wrong"), (10, "2 of 3 readers wrong")]
    assert got[0].truth == got[0].predicted == "normal"
    # an assisted arm read first is skipped: the first arm without the model counts
    assert errors.gallery("readers", rep, classes, reads=assisted_first + shifted) == got

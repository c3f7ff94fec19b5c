"""Subgroups: grouping rules on hand-made attributes, per-group figures against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from mskstudio.ml.evaluate import subgroups as sg
from mskstudio.ml.evaluate.metrics import wilson_ci


def _rep_and_attrs(n=80, classes=2, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    logits = rng.normal(0, 1, (n, classes))
    logits[np.arange(n), y] += 1.0
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    ids = list(range(100, 100 + n))
    attrs = {i: {"centre": "A" if k % 3 else "B", "age_years": 10 + k, "sex": None if k % 7 == 0 else "FM"[k % 2],
                 "lesion_mm": float(k % 40)} for k, i in enumerate(ids)}
    rep = {"image_ids": ids, "y_true": y.tolist(), "probs": probs.tolist()}
    return rep, attrs, y, probs


def test_group_of_rules():
    assert sg.group_of("age", {"age_years": 17.9}) == "< 18 y"
    assert sg.group_of("age", {"age_years": 18}) == "≥ 18 y"
    assert sg.group_of("age", {"age_years": None}) is None
    assert sg.group_of("lesion_size", {"lesion_mm": 20}, median_mm=20) == "≤ 20 mm"
    assert sg.group_of("lesion_size", {"lesion_mm": 21}, median_mm=20) == "> 20 mm"
    assert sg.group_of("manufacturer", {"manufacturer": ""}) is None
    assert sg.group_of("view", {"view": "AP"}) == "AP"


def test_binary_subgroups_match_scikit_learn_on_each_subset():
    rep, attrs, y, probs = _rep_and_attrs()
    rows = sg.subgroup_rows(rep, attrs, "centre")
    assert [r["group"] for r in rows] == ["A", "B"]
    centre = np.array([attrs[i]["centre"] for i in rep["image_ids"]])
    for r in rows:
        sel = centre == r["group"]
        assert r["n"] == sel.sum()
        assert r["accuracy"]["value"] == pytest.approx(accuracy_score(y[sel], probs[sel].argmax(1)))
        assert r["accuracy"]["ci"] == pytest.approx(list(wilson_ci(r["accuracy"]["k"], r["n"])))
        assert r["auc"]["value"] == pytest.approx(roc_auc_score(y[sel], probs[sel, 1]))
        assert r["auc"]["ci"][0] < r["auc"]["value"] < r["auc"]["ci"][1]
    sex = sg.subgroup_rows(rep, attrs, "sex")
    assert [r["group"] for r in sex] == ["F", "M", "unknown"]
    assert sum(r["n"] for r in sex) == 80
    lesion = sg.subgroup_rows(rep, attrs, "lesion_size")
    median = np.median([a["lesion_mm"] for a in attrs.values()])
    small = sum(a["lesion_mm"] <= median for a in attrs.values())
    assert [r["n"] for r in lesion if r["group"].startswith("≤")] == [small]


def test_multiclass_subgroups_use_the_macro_auc(tmp_path):
    rep, attrs, y, probs = _rep_and_attrs(n=90, classes=3, seed=1)
    rows = sg.all_subgroups(rep, attrs, groupings=("age", "centre"), n_boot=100)
    young = next(r for r in rows if r["group"] == "< 18 y")
    sel = np.array([attrs[i]["age_years"] < 18 for i in rep["image_ids"]])
    assert young["auc"]["value"] == pytest.approx(
        roc_auc_score(y[sel], probs[sel], multi_class="ovr", average="macro"))
    table = sg.subgroup_table(rows)
    assert table[0][:3] == ["grouping", "group", "n"] and len(table) == len(rows) + 1
    from mskstudio.ml.report.figures import forest_figure

    forest_figure(rows, tmp_path / "forest.svg", overall=0.7, title="t")
    forest_figure(rows, tmp_path / "forest.png")
    assert "<svg" in (tmp_path / "forest.svg").read_text()[:500]
    assert (tmp_path / "forest.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="grouping"):
        sg.subgroup_rows(rep, attrs, "shoe size")

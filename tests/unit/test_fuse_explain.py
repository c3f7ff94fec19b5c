"""Ablation runner, SHAP for the metadata part, and the paired comparisons (ml/fuse)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fuse_fixture import fake_image_run

from mskstudio.jobs import JobContext
from mskstudio.ml.fuse import compare
from mskstudio.ml.fuse.ablation import configurations, run_ablation, table_lines
from mskstudio.ml.fuse.crossfit import fit
from mskstudio.ml.fuse.explain import case_explanation, group_values, run_shap, shap_values
from mskstudio.ml.fuse.fuse import build_design, run_fuse
from mskstudio.ml.fuse.image_run import load_image_run


def test_configurations_leave_one_out_and_subsets():
    fields = ["age", "sex", "lab:ALP"]
    loo = configurations(fields, [], "loo", "late")
    assert [set(f) for _n, f in loo] == [set(fields), {"sex", "lab:ALP"}, {"age", "lab:ALP"}, {"age", "sex"}]
    subs = configurations(fields, ["age", "lab:ALP"], "subsets", "late")
    assert {frozenset(f) for _n, f in subs} == {frozenset(fields), frozenset(), frozenset({"age"}),
                                                 frozenset({"lab:ALP"}), frozenset({"age", "lab:ALP"})}
    assert all(f for _n, f in configurations(fields, ["age"], "subsets", "metadata"))  # no empty metadata model
    with pytest.raises(ValueError, match="choose at most 6"):
        configurations(fields, [f"lab:X{i}" for i in range(7)], "subsets", "late")


def test_ablation_table(phantom_project, tmp_path):
    image_run = fake_image_run(phantom_project)
    out = run_ablation(phantom_project, {"image_run": image_run, "mode": "stacking", "learner": "logreg",
                                         "clinical": "age,sex,lab:ALP", "groups": "age,lab:ALP", "n_boot": 50,
                                         "csv": str(tmp_path / "a.csv")}, JobContext.null())
    rows = out["rows"]
    assert rows[0]["config"].startswith("image-only") and rows[0]["vs_image"] is None
    n = len(load_image_run(phantom_project, image_run).test_ids)
    assert all(r["n"] == n for r in rows)
    for r in rows[1:]:
        d = r["vs_image"]["accuracy"]
        assert d["ci"][0] <= d["value"] <= d["ci"][1]
        assert r["accuracy"]["value"] - rows[0]["accuracy"]["value"] == pytest.approx(d["value"])
    assert len(rows) == 1 + len(configurations(["age", "sex", "lab:ALP"], ["age", "lab:ALP"], "both", "stacking"))
    assert (tmp_path / "a.csv").read_text().splitlines()[0].startswith("configuration,n,accuracy")
    assert len(table_lines(rows)) == len(rows) + 1


def test_mcnemar_matches_statsmodels():
    from statsmodels.stats.contingency_tables import mcnemar

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 120)
    a = rng.dirichlet(np.ones(3), 120)
    b = a.copy()
    b[np.arange(120), y] += rng.uniform(0, 0.6, 120)
    d = compare.paired(y, a, b, n_boot=200)
    ca, cb = a.argmax(1) == y, b.argmax(1) == y
    table = [[int((ca & cb).sum()), int((ca & ~cb).sum())], [int((~ca & cb).sum()), int((~ca & ~cb).sum())]]
    assert d["accuracy"]["p_mcnemar"] == pytest.approx(mcnemar(table, exact=True).pvalue)
    assert d["accuracy"]["value"] == pytest.approx(cb.mean() - ca.mean())
    from sklearn.metrics import roc_auc_score

    auc = lambda p: np.mean([roc_auc_score(y == j, p[:, j]) for j in range(3)])  # noqa: E731
    assert d["macro_auc"]["value"] == pytest.approx(auc(b) - auc(a))
    assert d["macro_auc"]["ci"][0] <= d["macro_auc"]["value"] <= d["macro_auc"]["ci"][1]


@pytest.mark.parametrize("learner", ["logreg", "hgb", "rf"])
def test_shap_values_add_up_to_the_model_output(phantom_project, learner):
    image_run = fake_image_run(phantom_project)
    ir = load_image_run(phantom_project, image_run)
    design = build_design(phantom_project, ir, "late", ["age", "sex", "site", "lab:ALP"], learner)
    cv, test = np.arange(len(ir.cv_ids)), np.arange(len(ir.cv_ids), len(ir.ids))
    final = fit(design, cv, learner, 0)
    values, expected, output = shap_values(final, design, cv, test)
    assert values.shape == (len(test), len(final.columns), len(final.model.classes_))
    np.testing.assert_allclose(values.sum(1) + expected, output, atol=1e-6)
    if learner == "rf":
        np.testing.assert_allclose(output, final.predict_proba(design, test)[:, final.model.classes_], atol=1e-9)
    grouped, names = group_values(values, final.groups)
    assert names == ["image", "age", "sex", "site", "lab:ALP"]
    np.testing.assert_allclose(grouped.sum(1), values.sum(1), atol=1e-9)  # summing parts loses nothing


def test_shap_job_summary_and_case(phantom_project):
    image_run = fake_image_run(phantom_project)
    res = run_fuse(phantom_project, {"image_run": image_run, "mode": "metadata", "learner": "rf",
                                     "clinical": "age,site,lab:ALP,lab:CRP", "n_boot": 20}, JobContext.null())
    out = run_shap(phantom_project, {"fusion_run": res["model_run_id"]}, JobContext.null())
    assert out["fields"] == ["age", "site", "lab:ALP", "lab:CRP"]
    assert out["additivity_max_error"] < 1e-6
    m = json.loads(phantom_project.models.get(res["model_run_id"])["metrics"])
    assert set(m["shap"]["mean_abs"]["site"]) == set(m["shap"]["classes"]) <= set(m["classes"])
    some = load_image_run(phantom_project, image_run).test_ids[0]
    case = case_explanation(phantom_project, res["model_run_id"], some)
    assert case["predicted"] in case["classes"] and set(case["shap"]) == set(out["fields"])
    alp = case["values"]["lab:ALP"]
    assert {"value", "unit", "ref_low", "ref_high", "normalised"} <= set(alp)
    if alp["value"] is not None:
        assert alp["normalised"] == pytest.approx(alp["value"] / alp["ref_high"])
    with pytest.raises(ValueError, match="is not a fusion run"):
        run_shap(phantom_project, {"fusion_run": image_run}, JobContext.null())


def test_cli_fuse_ablation_shap(phantom_project, capsys):
    from mskstudio.cli import main

    image_run = fake_image_run(phantom_project)
    root = str(phantom_project.root)
    phantom_project.close()
    assert main(["fuse", root, str(image_run), "--mode", "stacking", "--clinical", "age,sex,lab:ALP"]) == 0
    out = capsys.readouterr().out
    assert "stacking (rf)" in out and "vs image-only (paired, same cases)" in out
    assert main(["ablation", root, str(image_run), "--clinical", "age,lab:ALP", "--learner", "logreg"]) == 0
    out = capsys.readouterr().out
    assert "all − lab:ALP" in out and "image-only" in out
    assert main(["fuse", root, str(image_run), "--clinical", "age,shoe_size"]) == 1
    assert "clinical field 'shoe_size' is not one of" in capsys.readouterr().err


def test_train_fusion_fields_are_checked_before_training(phantom_project, capsys, monkeypatch):
    from mskstudio.cli import cmd_train, main

    root = str(phantom_project.root)
    phantom_project.close()
    ran = []
    monkeypatch.setattr(cmd_train, "run_sync", lambda *a, **k: ran.append(a) or {"model_run_id": 1})
    assert main(["train", root, "diagnosis", "--fusion", "late", "--clinical", "age,lab:NOPE"]) == 1
    assert "clinical field 'lab:NOPE': the project has no such lab" in capsys.readouterr().err and not ran
    assert main(["train", root, "diagnosis", "--fusion", "stacking"]) == 1
    assert "no clinical fields chosen" in capsys.readouterr().err and not ran

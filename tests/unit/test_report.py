"""The study report on a phantom project with a really trained run plus a second run on the
same hold-out: contents match the store and the statistics modules, and regenerating gives
the same tables and figures byte for byte."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "gui"))


@pytest.fixture(scope="module")
def trained(phantom_project_path, tmp_path_factory):
    from trained_project import build_trained_project

    return build_trained_project(phantom_project_path, tmp_path_factory.mktemp("report"))


def add_perturbed_run(project, run_a: int, seed: int = 1, name: str = "perturbed") -> int:
    """A second run with the same split and hold-out cases, its probabilities shuffled a little."""
    from mskstudio.ml.evaluate import metrics as ev

    row = project.models.get(run_a)
    metrics = project.models.metrics(run_a)
    rng = np.random.default_rng(seed)
    for key in ("holdout",):
        rep = metrics[key]
        probs = np.asarray(rep["probs"]) + rng.uniform(0, 0.3, np.shape(rep["probs"]))
        probs /= probs.sum(1, keepdims=True)
        new = ev.classification_report(rep["y_true"], probs, rep["classes"], n_boot=50)
        metrics[key] = {**new, "image_ids": rep["image_ids"], "y_true": rep["y_true"],
                        "probs": probs.round(5).tolist()}
    metrics["main"]["holdout"] = metrics["holdout"]
    b = project.models.create("classifier", row["arch"], name=name, params=project.models.params(run_a),
                              label_set_id=row["label_set_id"])
    project.models.set_fields(b, split=row["split"], data_hash=row["data_hash"])
    project.models.set_checkpoint(b, row["checkpoint_sha"], metrics=metrics)
    project.models.set_status(b, "done")
    return b


@pytest.fixture
def project(trained, tmp_path):
    from mskstudio.store import Project

    copy = tmp_path / "p.mskproj"
    shutil.copytree(trained[0], copy)
    with Project.open(copy) as p:
        yield p


def _csvs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / "tables").glob("*.csv"))}


def _rows(path: Path) -> list[list[str]]:
    return list(csv.reader(path.open(encoding="utf-8")))


def test_report_contents_and_regeneration(project, trained, tmp_path):
    from mskstudio.jobrun import submit_and_run
    from mskstudio.ml.evaluate import compare as cmp
    from mskstudio.ml.evaluate import dashboard_figures as dd
    from mskstudio.ml.explain.gradcam import cam_path

    a = trained[1]
    b = add_perturbed_run(project, a)
    cached = project.models.metrics(a)["holdout"]["image_ids"][0]
    path = cam_path(project, a, cached)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.outer(np.hanning(16), np.hanning(16)).astype(np.float32))  # as explain caches it
    r1 = submit_and_run(project, "report", {"out": str(tmp_path / "r1")})
    r2 = submit_and_run(project, "report", {"out": str(tmp_path / "r2"), "runs": f"{a},{b}"})
    assert r1["runs"] == [a, b] == r2["runs"]
    one, two = _csvs(tmp_path / "r1"), _csvs(tmp_path / "r2")
    assert one == two and len(one) >= 10
    figs1 = {p.name: p.read_bytes() for p in (tmp_path / "r1" / "figures").iterdir()}
    figs2 = {p.name: p.read_bytes() for p in (tmp_path / "r2" / "figures").iterdir()}
    assert figs1 == figs2

    out = tmp_path / "r1"
    html = (out / "report.html").read_text()
    assert project.name in html and f"Run #{a}" in html and "DeLong" in html
    for f in (out / "figures").iterdir():
        assert f.name in html or f.suffix == ".png"
    metrics = project.models.metrics(a)
    hold = metrics["holdout"]
    assert _rows(out / "tables" / f"run{a}_per_class.csv") == \
        [[str(v) for v in r] for r in dd.per_class_rows(hold, hold["classes"])]
    # comparisons: DeLong p of the first class = compare.delong_test on the stored probabilities
    rows = _rows(out / "tables" / "comparisons.csv")
    hb = project.models.metrics(b)["holdout"]
    y = np.asarray(hold["y_true"])
    first = next(r for r in rows[1:] if r[1].startswith("AUC ") and r[2] != "n/a")
    cls = first[1][4:].split(" (")[0]
    j = hold["classes"].index(cls)
    t = cmp.delong_test((y == j).astype(int), np.asarray(hold["probs"])[:, j], np.asarray(hb["probs"])[:, j])
    assert first[2] == f"{t['diff']:+.3f}" and first[4] == f"{t['p']:.4f}"
    assert all(float(r[5]) >= float(r[4]) for r in rows[1:] if r[4] != "n/a")  # Holm never lowers p
    # the selection flow starts from what the store holds
    flow = _rows(out / "tables" / "selection_flow.csv")
    imported = next(r for r in flow if r[0] == "imported")
    assert int(imported[1]) == project.images.count()
    analysed = next(r for r in flow if r[0] == "analysed")
    split = json.loads(project.models.get(a)["split"])
    assert int(analysed[1]) == len(set(split["test"]) | {i for f in split["folds"] for i in f["val"]})
    # cohort: the hold-out column counts the hold-out's patients
    cohort = _rows(out / "tables" / "cohort_by_test_set.csv")
    patients = next(r for r in cohort if r[0] == "patients")
    patient_of = project.images.patient_of()
    assert int(patients[3]) == len({patient_of[i] for i in hold["image_ids"]})
    assert (out / "figures" / f"run{a}_cam_{cached}.png").exists() and f"run{a}_cam_{cached}.png" in html
    errors = _rows(out / "tables" / f"run{a}_errors.csv")
    pred = np.asarray(hold["probs"]).argmax(1)
    assert len(errors) - 1 == min(20, int((pred != y).sum()))
    checklist = _rows(out / "tables" / "checklist.csv")
    assert any(r[4] == "answered in the report" for r in checklist[1:])
    gradcam = next(r for r in checklist if r[2] == "#gradcam")
    assert gradcam[4] == "answered in the report"


def test_operating_point_is_stored_and_the_report_uses_it(project, trained, tmp_path, capsys):
    from mskstudio.cli import main

    a = trained[1]
    assert main(["operating-point", str(project.root), str(a), "--rule", "sensitivity", "--target", "0.8"]) == 0
    assert "chosen on validation" in capsys.readouterr().out
    from mskstudio.store import Project

    with Project.open(project.root) as p:
        op = p.models.metrics(a)["operating_point"]
        assert op["rule"] == "sensitivity" and op["validation"]["at_threshold"]["sensitivity"]["value"] >= 0.8
    assert main(["report", str(project.root), "--runs", str(a), "--out", str(tmp_path / "r"), "--png"]) == 0
    html = (tmp_path / "r" / "report.html").read_text()
    assert "stored on the run" in html
    assert main(["report", str(project.root), "--runs", "999", "--out", str(tmp_path / "x")]) == 1
    assert "no model run 999" in capsys.readouterr().err


def test_predictions_use_the_stored_operating_point(project, trained):
    from mskstudio.jobrun import submit_and_run
    from mskstudio.ml.classify.predict import predictions
    from mskstudio.ml.evaluate.calibration import apply_temperature, store_operating_point

    a = trained[1]
    ids = project.images.ids()[:12]
    submit_and_run(project, "predict", {"model_run": a, "image_ids": ids, "device": "cpu"})
    before = {r["image_id"]: r for r in predictions(project, a)}
    op = store_operating_point(project, a, rule="sensitivity", target=1.0)
    submit_and_run(project, "predict", {"model_run": a, "image_ids": ids, "device": "cpu"})
    after = {r["image_id"]: r for r in predictions(project, a)}
    classes = project.models.metrics(a)["classes"]
    ls = project.models.get(a)["label_set_id"]
    positive_id = project.labels.class_id(ls, op["positive"])
    for i in ids:
        raw = np.array([[before[i]["probs"][project.labels.class_id(ls, c)] for c in classes]])
        p_pos = apply_temperature(raw, op["temperature"])[0, classes.index(op["positive"])]
        assert after[i]["probs"][positive_id] == pytest.approx(p_pos, abs=1e-4)
        if p_pos >= op["threshold"] + 1e-4:
            assert after[i]["class_id"] == positive_id
        elif p_pos < op["threshold"] - 1e-4:
            assert after[i]["class_id"] != positive_id


def test_a_run_with_an_external_centre_reports_each_test_set(project, tmp_path):
    from trained_project import FAST

    from mskstudio.jobrun import submit_and_run
    from mskstudio.ml.evaluate import dashboard_figures as dd

    centres = sorted({r["centre"] for r in project.images.table() if r["centre"]})
    result = submit_and_run(project, "train", {**FAST, "external_centres": [centres[0]], "name": "ext"})
    run = result["model_run_id"]
    metrics = project.models.metrics(run)
    split = json.loads(project.models.get(run)["split"])
    ext = metrics["external"][centres[0]]
    assert ext["image_ids"] == split["external"][centres[0]] and ext["n"] == len(ext["y_true"]) > 0
    centre_of = {int(r["id"]): r["centre"] for r in project.images.table()}
    assert centres[0] not in {centre_of[i] for i in metrics["holdout"]["image_ids"]}
    assert centres[0] not in {centre_of[i] for f in split["folds"] for i in f["val"]}
    submit_and_run(project, "report", {"out": str(tmp_path / "r"), "runs": str(run)})
    sets = _rows(tmp_path / "r" / "tables" / f"run{run}_test_sets.csv")
    assert [r[0] for r in sets[1:]] == ["internal hold-out", f"external: {centres[0]}"]
    assert sets[2][1] == str(ext["n"])
    assert sets[2][2] == dd.fmt_prop(ext["accuracy"])

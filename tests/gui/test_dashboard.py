"""Dashboard, Model menu and Train dialog (pytest-qt, offscreen) on a tiny trained run."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtWidgets import QInputDialog

from mskstudio.gui.review import review_queue as rq
from mskstudio.ml.evaluate import dashboard_figures as dd
from mskstudio.ml.evaluate.metrics import proportion

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def trained(phantom_project_path, tmp_path_factory):
    from trained_project import build_trained_project

    return build_trained_project(phantom_project_path, tmp_path_factory.mktemp("dash"))


@pytest.fixture
def window(qtbot, trained, tmp_path):
    from trained_project import close_window, open_window

    w = open_window(qtbot, trained[0], tmp_path)
    w.boards = []
    yield w
    close_window(w, *w.boards)


@pytest.fixture
def dash(window):
    from mskstudio.gui.dashboard.dashboard import Dashboard

    d = Dashboard(window)
    window.add_workspace("Dashboard", d)
    window.workspace.setCurrentWidget(d)
    return d


def test_dashboard_shows_the_runs_confusion_matrix_and_lists_cell_cases(dash, qtbot, trained):
    run_id = trained[1]
    assert dash.run_a.currentData() == run_id
    hold = dash.project.models.metrics(run_id)["holdout"]
    assert dash.confusion_values() == hold["confusion"]
    assert dash.per_class.rowCount() == len(hold["classes"])
    # click the fullest cell: the listed cases are exactly those hold-out images
    cm = np.asarray(hold["confusion"])
    r, c = np.unravel_index(cm.argmax(), cm.shape)
    dash.confusion.cellClicked.emit(int(r), int(c))
    pred = np.asarray(hold["probs"]).argmax(1)
    expected = [i for i, t, p in zip(hold["image_ids"], hold["y_true"], pred, strict=True)
                if t == r and p == c]
    assert dash.listed_cases() == expected and len(expected) == cm[r, c]
    # double-click opens it in the viewer
    dash.cases.itemDoubleClicked.emit(dash.cases.item(0))
    assert dash.window_.image_id == expected[0]
    assert dash.window_.workspace.currentWidget() is dash.window_.viewer
    # ROC curves drawn for classes present in the hold-out, learning curves per fold
    assert len(dash.roc.plotItem.listDataItems()) > 1
    assert len(dash.curves.plotItem.listDataItems()) >= 2 * 3
    dash.which.setCurrentIndex(dash.which.findData("oof"))
    oof = dash.project.models.metrics(run_id)["main"]["oof"]
    assert dash.confusion_values() == oof["confusion"]
    r, c = np.unravel_index(int(np.argmax(oof["confusion"])), np.shape(oof["confusion"]))
    dash.select_cell(int(r), int(c))
    assert len(dash.listed_cases()) == oof["confusion"][r][c] > 0


def test_exports_csv_png_svg(dash, tmp_path):
    hold = dash.project.models.metrics(dash.run_a.currentData())["holdout"]
    path = dash.export_table("confusion", tmp_path / "cm.csv")
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["truth \\ predicted", *hold["classes"]]
    assert [[int(v) for v in r[1:]] for r in rows[1:]] == hold["confusion"]
    assert [r[0] for r in rows[1:]] == hold["classes"]
    rows = list(csv.reader(dash.export_table("per_class", tmp_path / "pc.csv").open()))
    assert rows[0][:2] == ["class", "n"] and len(rows) == len(hold["classes"]) + 1
    first = hold["classes"][0]
    assert rows[1][:2] == [first, str(hold["per_class"][first]["support"])]
    rows = list(csv.reader(dash.export_table("comparison", tmp_path / "cmp.csv").open()))
    acc = dict((r[0], r[1]) for r in rows[1:])["accuracy"]
    assert acc == dd.fmt_prop(hold["accuracy"])
    for fig in ("roc", "curves"):
        png = dash.export_figure(fig, tmp_path / f"{fig}.png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        svg = dash.export_figure(fig, tmp_path / f"{fig}.svg")
        assert "<svg" in svg.read_text()[:2000]


def test_two_runs_side_by_side(dash, window):
    """A second run (a copy of the first, named as a DeepCluster-initialised one) compares."""
    project = window.project
    a = dash.run_a.currentData()
    row = project.models.get(a)
    params = {**project.models.params(a), "init": "run:99", "name": "dc init"}
    b = project.models.create("classifier", "tinycnn", name="dc init", params=params,
                              label_set_id=row["label_set_id"])
    metrics = project.models.metrics(a)
    metrics["holdout"]["accuracy"] = {"value": 0.5, "ci": [0.25, 0.75], "k": 6, "n": 12}
    metrics["pointing_game"] = {"tolerance_mm": 5.0, "pointing": proportion(4, 5), "chance_mean": 0.02}
    project.models.set_checkpoint(b, row["checkpoint_sha"], metrics=metrics)
    project.models.set_status(b, "done")
    dash.reload()
    dash.set_runs(a, b)
    rows = dash.table_rows("comparison")
    by = {r[0]: r[1:] for r in rows[1:]}
    assert by["init"] == ["scratch", "run:99"]
    assert by["accuracy"][1] == "0.500 [0.250, 0.750]"
    assert by["n"] == [str(metrics["holdout"]["n"])] * 2
    lo, hi = proportion(4, 5)["ci"]
    assert by["Grad-CAM on lesion (±5 mm)"] == ["", f"0.800 [{lo:.3f}–{hi:.3f}] n=5"]
    out = Path(os.environ.get("MSKSTUDIO_SHOTS", project.root.parent))
    out.mkdir(parents=True, exist_ok=True)
    cm = np.asarray(metrics["holdout"]["confusion"])
    dash.select_cell(*map(int, np.unravel_index(cm.argmax(), cm.shape)))
    window.grab().save(str(out / "dashboard.png"))


def test_model_menu_and_train_dialog_validate_then_submit(window, monkeypatch):
    from mskstudio.gui.model_menu import add_model_menu

    menu = add_model_menu(window)
    assert [a.text() for a in menu.actions() if a.text()][:3] == [
        "&Train classifier…", "&Predict…", "&Explain current image…"]
    started = []
    monkeypatch.setattr(window.runner, "run_existing", lambda job_id, lane=None: started.append(job_id))
    window.actions_by_name["train"].trigger()
    d = window.dialogs[-1]
    assert d.windowTitle() == "Train classifier"
    d.label_set.setCurrentIndex(d.label_set.findData("region"))
    assert d.label_set.findData("truth:region") == -1       # truth sets are not offered
    # impossible parameters: clear messages, nothing submitted
    d.folds.setValue(1)
    d.epochs.setValue(0)
    d.freeze.setChecked(True)
    d.holdout.setCurrentIndex(d.holdout.findData("centre"))
    d.centre.clear()
    assert d.submit() is None and not started
    text = d.problems.text()
    assert "at least 2 folds" in text and "at least one epoch" in text
    assert "frozen encoder needs pretrained weights" in text and "centre hold-out needs the centre" in text
    d.start.kind.setCurrentIndex(d.start.kind.findData("file"))
    d.start.file.setText("/nonexistent/w.pt")
    assert any("Weights file not found" in p for p in d.validate())
    # fixed: submitted as a train job row with these params
    d.start.kind.setCurrentIndex(d.start.kind.findData("scratch"))
    d.freeze.setChecked(False)
    d.folds.setValue(3)
    d.epochs.setValue(2)
    d.holdout.setCurrentIndex(d.holdout.findData("random"))
    d.arch.setCurrentText("tinycnn")
    d.size.setValue(64)
    d.loss_weighting.setCurrentIndex(d.loss_weighting.findData("median"))
    assert d.params()["mask_guidance"] == 0.0             # off unless asked
    if window.project.annotations.images_with_masks():
        d.mask_guidance.setValue(1.5)
    job_id = d.submit()
    assert job_id is not None and started == [job_id] and d.problems.text() == ""
    submitted = []
    monkeypatch.setattr(window.runner, "submit", lambda kind, params: submitted.append((kind, params)) or 7)
    monkeypatch.setattr(QInputDialog, "getItem", staticmethod(lambda *a, **k: (a[3][0], True)))
    window.actions_by_name["pointing_game"].trigger()
    first_run = rq.classifier_runs(window.project)[0]["id"]
    assert submitted == [("pointing-game", {"model_run_id": first_run})]
    row = window.project.jobs.get(job_id)
    params = window.project.jobs.params(job_id)
    assert row["kind"] == "train" and row["status"] == "submitted"
    assert params["label_set"] == "region" and params["k"] == 3 and params["epochs"] == 2
    assert params["arch"] == "tinycnn" and params["size"] == 64 and params["loss_weighting"] == "median"
    assert params["init"] == "scratch" and params["freeze_encoder"] is False
    assert params["holdout"] == "random" and params["test_centre"] is None
    assert params["mask_guidance"] == (1.5 if window.project.annotations.images_with_masks() else 0.0)


def test_validate_params_cascade_and_reject(window):
    from mskstudio.gui.dialogs.train_dialog import validate_params

    p = window.project
    base = {"label_set": "region", "k": 2, "epochs": 1, "batch_size": 4, "size": 64, "lr": 1e-3}
    assert validate_params(p, base) == []
    assert any("scoring only" in m for m in validate_params(p, {**base, "label_set": "truth:region"}))
    assert any("not a labelled class" in m for m in validate_params(p, {**base, "cascade": "nope"}))
    assert any("reject class" in m for m in validate_params(p, {**base, "reject": "class"}))
    assert any("DeepCluster" in m for m in validate_params(p, {**base, "init": "run:1"}))
    assert any("folds need" in m for m in validate_params(p, {**base, "k": 500}))
    lacks_masks = any("Mask guidance needs" in m for m in validate_params(p, {**base, "mask_guidance": 1.0}))
    assert lacks_masks == (not p.annotations.images_with_masks())


def test_learning_curves_include_the_validation_attention_of_guided_runs():
    history = [{"epoch": e, "train_loss": 3.0 - e, "val_loss": 0.7, "train_acc": 0.5, "val_acc": 0.5,
                "val_attention": 3.5 - 0.5 * e} for e in range(3)]
    unguided = [{k: v for k, v in h.items() if k != "val_attention"} for h in history]
    curves = dd.learning_curves({"main": {"folds": [{"history": history}, {"history": unguided}]}})
    assert curves["fold 0"]["val_attention"] == [(e, 3.5 - 0.5 * e) for e in range(3)]
    assert curves["fold 1"]["val_attention"] == []           # nothing drawn for an unguided fold
    from_job = dd.curves_from_job({"fold0/val_attention": [(0, 3.1), (1, 2.9)], "fold0/val_loss": [(0, 0.7)]})
    assert from_job["fold 0"]["val_attention"] == [(0, 3.1), (1, 2.9)]
    # An older guided run stored its objective (cross-entropy + attention) as train_loss:
    # not drawn beside val_loss, which is cross-entropy alone.
    older = [{**h, "train_attention": 4.0} for h in history]
    newer = [{**h, "train_attention": 4.0, "train_objective": 7.0} for h in history]
    curves = dd.learning_curves({"main": {"folds": [{"history": older}, {"history": newer}]}})
    assert curves["fold 0"]["train_loss"] == [] and curves["fold 0"]["val_loss"]
    assert curves["fold 1"]["train_loss"] == [(e, 3.0 - e) for e in range(3)]


def test_attention_curves_have_their_own_view(dash):
    """Loss/accuracy and the guided runs' attention are drawn apart, each on a readable scale."""
    def drawn():
        return sorted(float(v) for item in dash.curves.plotItem.listDataItems() for v in item.yData)

    def legend_names():
        return [label.text for _sample, label in dash.curves_legend.items]

    attention_item = dash.curve_kind.model().item(dash.curve_kind.findData("attention"))
    assert not attention_item.isEnabled()                   # the fixture's run is not guided
    history = [{"epoch": e, "train_loss": 0.9 - 0.1 * e, "val_loss": 0.8 - 0.05 * e, "train_acc": 0.6,
                "val_acc": 0.55 + 0.05 * e, "train_attention": 4.0 - 0.4 * e, "train_objective": 4.5,
                "val_attention": 3.8 - 0.3 * e} for e in range(4)]
    dash.metrics_a = {"main": {"folds": [{"history": history}, {"history": history}]}}
    dash._draw_curves()
    assert attention_item.isEnabled()
    losses_and_acc = sorted(h[k] for h in history for k in ("train_loss", "val_loss", "val_acc")) * 2
    assert drawn() == pytest.approx(sorted(losses_and_acc))  # no attention on the loss scale
    assert legend_names() == ["fold 0", "fold 1"]           # one entry per fold, not per curve
    assert not dash.curves.getAxis("left").autoSIPrefix     # 0.6 stays 0.6, not 600 (x0.001)
    dash.curve_kind.setCurrentIndex(dash.curve_kind.findData("attention"))
    attention = sorted(h[k] for h in history for k in ("train_attention", "val_attention")) * 2
    assert drawn() == pytest.approx(sorted(attention))
    assert "val attention" in dash.curves.plotItem.getAxis("left").labelText

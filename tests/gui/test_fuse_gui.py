"""Clinical data in the GUI: the Train dialog's section, the Fuse dialog, fusion runs in the Dashboard."""

from __future__ import annotations

from fuse_fixture import fake_image_run


def _record_submits(window, monkeypatch):
    submitted = []

    def submit(kind, params=None, lane=None):
        submitted.append((kind, params))
        return 100 + len(submitted)

    monkeypatch.setattr(window.runner, "submit", submit)
    return submitted


def test_fuse_dialog_submits_fuse_then_shap(window, monkeypatch):
    from mskstudio.gui.model_menu import add_model_menu

    image_run = fake_image_run(window.project)
    add_model_menu(window)
    submitted = _record_submits(window, monkeypatch)
    window.actions_by_name["fuse"].trigger()
    d = window.dialogs[-1]
    assert d.windowTitle() == "Fuse clinical data"
    assert d.run.currentData() == image_run
    assert {"age", "sex", "lab:ALP"} <= set(d.section.checks)
    for box in d.section.checks.values():
        box.setChecked(False)
    assert d.submit() is None and "tick at least one field" in d.problems.text() and not submitted
    d.section.mode.setCurrentIndex(d.section.mode.findData("stacking"))
    d.section.checks["age"].setChecked(True)
    d.section.checks["lab:ALP"].setChecked(True)
    job = d.submit()
    assert submitted == [("fuse", {"model_run_id": image_run, "mode": "stacking", "clinical": ["age", "lab:ALP"]})]
    window.runner.job_returned.emit(job, {"model_run_id": 77})
    assert submitted[-1] == ("shap", {"model_run_id": 77})


def test_train_dialog_clinical_section_chains_fusion(window, monkeypatch):
    from mskstudio.gui.model_menu import add_model_menu

    add_model_menu(window)
    window.actions_by_name["train"].trigger()
    d = window.dialogs[-1]
    d.label_set.setCurrentIndex(d.label_set.findData("diagnosis"))
    d.folds.setValue(2)
    assert d.clinical.value()[0] is None            # image only unless asked
    assert not any(box.isEnabled() for box in d.clinical.checks.values())
    d.clinical.mode.setCurrentIndex(d.clinical.mode.findData("late"))
    pid = window.project.images.patient_of(window.project.images.ids()[:1])
    window.project.images.set_lab(next(iter(pid.values())), "ALP", 312.0, "U/L", None, None)
    assert any("lab ALP at" in p and "no reference range" in p for p in d.validate())
    window.project.images.set_lab(next(iter(pid.values())), "ALP", 312.0, "U/L", 40.0, 130.0)
    assert d.validate() == []
    submitted = _record_submits(window, monkeypatch)
    job = d.submit()
    assert submitted[0][0] == "train"
    window.runner.job_returned.emit(job, {"model_run_id": 5})
    kind, params = submitted[-1]
    assert kind == "fuse" and params["model_run_id"] == 5 and params["mode"] == "late"
    assert params["clinical"] == d.clinical.fields() and "lab:ALP" in params["clinical"]


def test_dashboard_lists_fusion_runs(window):
    from mskstudio.gui.fuse.clinical_section import fusion_runs
    from mskstudio.jobs import JobContext
    from mskstudio.ml.fuse.fuse import run_fuse

    image_run = fake_image_run(window.project)
    res = run_fuse(window.project, {"image_run": image_run, "mode": "metadata", "learner": "logreg",
                                    "clinical": "age,lab:CRP", "n_boot": 20}, JobContext.null())
    runs = fusion_runs(window.project)
    assert [r["id"] for r in runs] == [res["model_run_id"]]
    from mskstudio.gui.dashboard.dashboard import Dashboard

    board = Dashboard(window)
    board.reload()
    ids = [board.run_a.itemData(i) for i in range(board.run_a.count())]
    assert res["model_run_id"] in ids and image_run in ids
    board.set_runs(image_run, res["model_run_id"])
    table = board.comparison_table()
    assert any("paired" in str(row[0]) for row in table)
    board.deleteLater()


def test_shap_panel_shows_the_case_values_and_ranges(window):
    from mskstudio.gui.fuse.shap_panel import ShapPanel
    from mskstudio.jobs import JobContext
    from mskstudio.ml.fuse.explain import run_shap
    from mskstudio.ml.fuse.fuse import run_fuse
    from mskstudio.ml.fuse.image_run import load_image_run

    p = window.project
    image_run = fake_image_run(p)
    panel = ShapPanel(board=None)
    panel.show_case(p, image_run, 1)
    assert "No fusion run with SHAP" in panel.text.text()
    res = run_fuse(p, {"image_run": image_run, "mode": "late", "clinical": "age,lab:ALP", "n_boot": 20},
                   JobContext.null())
    run_shap(p, {"fusion_run": res["model_run_id"]}, JobContext.null())
    ir = load_image_run(p, image_run)
    table = {ir.test_ids[k]: k for k in range(len(ir.test_ids))}
    pid_of = p.images.patient_of(list(table))
    with_alp = [i for i in table if any(r["name"] == "ALP" and r["value"] is not None
                                        for r in p.images.labs(pid_of[i]))]
    panel.show_case(p, image_run, with_alp[0])
    text = panel.text.text()
    assert f"fusion run #{res['model_run_id']}" in text and "lab:ALP" in text and "(normal " in text
    panel.show_case(p, image_run, ir.cv_ids[0])
    assert "not in fusion run" in panel.text.text()
    panel.deleteLater()


def test_train_dialog_joint_fusion_is_part_of_the_train_job(window, monkeypatch):
    from mskstudio.gui.model_menu import add_model_menu

    add_model_menu(window)
    window.actions_by_name["train"].trigger()
    d = window.dialogs[-1]
    d.label_set.setCurrentIndex(d.label_set.findData("diagnosis"))
    d.folds.setValue(2)
    assert d.params()["clinical"] is None
    d.clinical.mode.setCurrentIndex(d.clinical.mode.findData("joint"))
    for name, box in d.clinical.checks.items():
        box.setChecked(name in ("age", "lab:ALP"))
    assert d.params()["clinical"] == ["age", "lab:ALP"]
    d.cascade.setCurrentIndex(max(1, d.cascade.count() - 1))
    if d.cascade.currentData():
        assert any("cascade" in p for p in d.validate())
    d.cascade.setCurrentIndex(d.cascade.findData(None))
    assert d.validate() == []
    submitted = _record_submits(window, monkeypatch)
    job = d.submit()
    assert submitted == [("train", d.params())] and submitted[0][1]["clinical"] == ["age", "lab:ALP"]
    window.runner.job_returned.emit(job, {"model_run_id": 5})
    assert [k for k, _ in submitted] == ["train"]  # no fuse job chained: joint trains end to end


def test_predict_and_noise_pickers_offer_fusion_runs(window, monkeypatch):
    from mskstudio.gui import model_menu
    from mskstudio.gui.noise.rows import classifier_runs
    from mskstudio.ml.classify.predict import store_predictions

    image_run = fake_image_run(window.project)
    fusion = window.project.models.create("fusion", "late:logreg", name="late fusion", params={},
                                          parent_run_id=image_run, label_set_id=window.project.labels.find_label_set(
                                              "diagnosis"))
    window.project.models.set_status(fusion, "done")
    seen = {}

    def get_item(_parent, _title, _label, labels, *_a):
        seen["labels"] = labels
        return next(t for t in labels if t.startswith(f"#{fusion} ")), True

    monkeypatch.setattr(model_menu.QInputDialog, "getItem", get_item)
    submitted = _record_submits(window, monkeypatch)
    model_menu.predict(window)
    assert submitted == [("predict", {"model_run_id": fusion})]
    assert any(t.startswith(f"#{image_run} ") for t in seen["labels"])
    import numpy as np

    ids = window.project.images.ids()[:2]
    cls = [r.id for r in window.project.labels.classes(window.project.labels.find_label_set("diagnosis"))][:2]
    store_predictions(window.project, fusion, ids, {"class_ids": cls, "probs": np.asarray([[0.9, 0.1], [0.2, 0.8]]),
                                                    "pred": [0, 1], "rejected": [False, False]})
    assert fusion in [r for r, _ in classifier_runs(window.project, "diagnosis")]

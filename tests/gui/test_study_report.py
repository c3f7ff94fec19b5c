"""Model › Study report… asks runs and a folder, runs the report job and says where it wrote it."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QFileDialog, QInputDialog

from mskstudio.gui import model_menu

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def trained(phantom_project_path, tmp_path_factory):
    from trained_project import build_trained_project

    return build_trained_project(phantom_project_path, tmp_path_factory.mktemp("study-report"))


def test_study_report_menu_writes_the_report(qtbot, trained, tmp_path, monkeypatch):
    from trained_project import close_window, open_window

    w = open_window(qtbot, trained[0], tmp_path)
    try:
        model_menu.add_model_menu(w)
        asked = []
        monkeypatch.setattr(QInputDialog, "getText",
                            staticmethod(lambda *a, **k: asked.append(k.get("text")) or (k.get("text"), True)))
        monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(lambda *a, **k: str(tmp_path)))
        w.actions_by_name["study_report"].trigger()
        assert asked == [str(trained[1])]  # every run with hold-out results is offered
        html = tmp_path / f"{w.project.name} report" / "report.html"
        qtbot.waitUntil(lambda: "Study report written" in w.statusBar().currentMessage(), timeout=60000)
        assert html.exists() and f"Run #{trained[1]}" in html.read_text()
    finally:
        close_window(w)


def test_dashboard_offers_the_external_test_sets(qtbot, trained, tmp_path):
    import json

    from trained_project import close_window, open_window

    from mskstudio.gui.dashboard.dashboard import Dashboard

    w = open_window(qtbot, trained[0], tmp_path)
    try:
        run = trained[1]
        metrics = w.project.models.metrics(run)
        ext = dict(metrics["holdout"])
        keep = list(range(len(ext["y_true"]) // 2 + 1))
        ext.update(n=len(keep), y_true=[ext["y_true"][k] for k in keep],
                   image_ids=[ext["image_ids"][k] for k in keep], probs=[ext["probs"][k] for k in keep])
        metrics["external"] = {"Centre X": ext}
        w.project.models.set_fields(run, metrics=json.dumps(metrics))
        d = Dashboard(w)
        w.add_workspace("Dashboard", d)
        d.reload()
        key = d.which.findData("external:Centre X")
        assert key >= 0 and d.which.itemText(key) == "External test: Centre X"
        d.which.setCurrentIndex(key)
        assert f"n = {len(keep)}" in d.note.text()
    finally:
        close_window(w)


def test_review_queue_decides_hold_out_cases_by_the_operating_point(trained, tmp_path):
    import shutil

    import numpy as np

    from mskstudio.gui.review.review_queue import load_cases
    from mskstudio.ml.evaluate.calibration import apply_temperature, store_operating_point
    from mskstudio.store import Project

    copy = tmp_path / "r.mskproj"
    shutil.copytree(trained[0], copy)
    with Project.open(copy) as p:
        run = trained[1]
        assert not p.models.predictions(run)  # the hold-out fallback is what is tested
        argmax = {c.image_id: c.pred for c in load_cases(p, run).cases}
        op = store_operating_point(p, run, rule="sensitivity", target=1.0)
        hold = p.models.metrics(run)["holdout"]
        names = hold["classes"]
        pos = p.labels.class_id(p.models.get(run)["label_set_id"], op["positive"])
        scaled = apply_temperature(np.asarray(hold["probs"]), op["temperature"])[:, names.index(op["positive"])]
        cases = {c.image_id: c for c in load_cases(p, run).cases}
        for image_id, q in zip(hold["image_ids"], scaled, strict=True):
            assert (cases[image_id].pred == pos) == (q >= op["threshold"])
        # below the threshold the rest is decided by argmax as before
        for image_id, q in zip(hold["image_ids"], scaled, strict=True):
            if q < op["threshold"] and argmax[image_id] != pos:
                assert cases[image_id].pred == argmax[image_id]

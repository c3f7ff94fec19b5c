"""Jobs dock: the selected job's parameters as a label/value form (defaults marked), raw JSON on a toggle."""

from __future__ import annotations

import dataclasses
import json

import pytest

from mskstudio.gui.jobs.param_form import param_rows
from mskstudio.ml.classify.params import TrainParams

pytestmark = pytest.mark.gui


def test_rows_follow_the_parameter_object_and_mark_defaults():
    params = dataclasses.replace(TrainParams(), label_set="region", epochs=3, arch="tinycnn").to_json()
    rows = {r.key: r for r in param_rows("train", json.dumps(params))}
    # every field of the object, in its order, with a human name
    assert list(rows) == [f.name for f in dataclasses.fields(TrainParams) if f.name != "resume_of"]
    assert rows["lr"].label == "Learning rate" and rows["lr"].default and rows["lr"].value == "0.001"
    assert rows["epochs"].label == "Epochs" and rows["epochs"].value == "3" and not rows["epochs"].default
    assert rows["batch_size"].label == "Batch size" and rows["batch_size"].default
    assert rows["arch"].label == "Architecture" and not rows["arch"].default
    assert "tinycnn" in rows["arch"].help  # the field's own source comment lists the choices
    assert rows["augment"].value in ("yes", "no")
    # values a caller left out are shown as the defaults the job fills in
    short = {r.key: r for r in param_rows("train", {"label_set": "region"})}
    assert short["epochs"].value == str(TrainParams().epochs) and short["epochs"].default


def test_kinds_without_a_parameter_object_and_stale_keys_show_what_is_stored():
    rows = param_rows("import", {"path": "/data/in", "copy_files": True})
    assert [(r.label, r.value, r.default) for r in rows] == [("Path", "/data/in", False), ("Copy files", "yes", False)]
    assert [r.key for r in param_rows("train", {"label_set": "x", "no_such": 1})] == ["label_set", "no_such"]
    assert param_rows("train", "not json") != [] and param_rows("import", None) == []


def test_the_jobs_dock_shows_the_form_and_the_raw_json(window):
    w = window
    params = {"label_set": "region", "epochs": 4, "arch": "tinycnn"}
    job_id = w.project.jobs.submit("train", params)
    view = w.jobs_view
    view.set_project(w.project)
    view.table.setCurrentCell(view.rows[job_id], 0)
    assert view.current_job() == job_id
    form = view.params_form
    shown = dict(form.shown())
    assert "<b>4</b>" in shown["Epochs"]                     # set by the user: bold
    assert "(default)" in shown["Learning rate"]            # the default: marked
    assert "params {" not in view.details.toPlainText()     # no JSON dump in the log any more
    assert form.scroll.isVisibleTo(form) and not form.raw.isVisibleTo(form)
    form.raw_button.setChecked(True)
    assert form.raw.isVisibleTo(form) and not form.scroll.isVisibleTo(form)
    assert json.loads(form.raw.toPlainText()) == w.project.jobs.params(job_id)

"""Job parameter objects: defaults defined once, JSON round trip, old names accepted."""

from __future__ import annotations

import pytest

from mskstudio import jobrun
from mskstudio.ml.classify.params import ExplainParams, PredictParams, TrainParams
from mskstudio.ml.cluster.params import ClusterParams
from mskstudio.ml.segment.params import SEGMENTER_ARCHS, TrainBoxSegParams, TrainSegParams


def test_every_registered_kind_has_a_working_parameter_class():
    for kind in jobrun.JOB_PARAMS:
        assert kind in jobrun.JOB_KINDS
        cls = jobrun.params_class(kind)
        assert kind == cls.KIND
        assert cls.from_json(cls().to_json()) == cls()  # defaults survive a JSON round trip


def test_the_jobs_take_their_defaults_from_the_parameter_objects():
    from mskstudio.ml.classify import train
    from mskstudio.ml.cluster import deepcluster
    from mskstudio.ml.segment import roi_seg
    from mskstudio.ml.segment import train as seg_train

    assert TrainParams().to_json() == train.DEFAULTS and train.DEFAULTS["size"] == 224
    assert seg_train.DEFAULTS["class"] is None and TrainSegParams().to_json() == seg_train.DEFAULTS
    assert TrainBoxSegParams().to_json() == roi_seg.DEFAULTS
    assert ClusterParams().to_json() == deepcluster.DEFAULTS
    from mskstudio.ml.detect import train as det_train
    from mskstudio.ml.detect.params import TrainDetParams
    from mskstudio.ml.report import report
    from mskstudio.ml.report.params import ReportParams

    assert TrainDetParams().to_json() == det_train.DEFAULTS and det_train.DEFAULTS["class"] is None
    assert ReportParams().to_json() == report.DEFAULTS


def test_registry_names_are_not_copied_out_of_step():
    from mskstudio.ml.models import BACKBONES
    from mskstudio.ml.segment.unet import SEGMENTERS

    assert set(SEGMENTER_ARCHS) == set(SEGMENTERS)
    assert {"resnet18", "resnet50"} <= set(BACKBONES)


def test_old_parameter_names_of_stored_jobs_are_accepted():
    assert PredictParams.from_json({"model_run": 7}).model_run_id == 7
    assert ExplainParams.from_json({"model_run": 7, "image_ids": [1]}).model_run_id == 7
    assert TrainSegParams.from_json({"class": "tumour"}).class_name == "tumour"
    assert TrainSegParams(class_name="tumour").to_json()["class"] == "tumour"


@pytest.mark.parametrize("kind, old, new, value", [
    ("fuse", "image_run", "model_run_id", 7), ("ablation", "image_run", "model_run_id", 7),
    ("shap", "fusion_run", "model_run_id", 7), ("detect", "run_id", "model_run_id", 7),
    ("export-det", "run_id", "model_run_id", 7), ("fill-boxes", "run_id", "model_run_id", 7),
    ("operating-point", "run", "model_run_id", 7), ("report", "runs", "model_run_ids", "3,5"),
    ("predict", "model_run", "model_run_id", 7), ("explain", "model_run", "model_run_id", 7),
    ("pointing-game", "model_run", "model_run_id", 7), ("prelabel", "run_id", "model_run_id", 7),
    ("export-onnx", "run_id", "model_run_id", 7), ("recluster", "run", "cluster_run_id", 7),
])
def test_stored_jobs_with_the_old_id_names_still_read(kind, old, new, value):
    """Job rows written before the ids had one name (``model_run``, ``run``, ``run_id``,
    ``image_run``, ``fusion_run``) read as today's ``model_run_id`` / ``cluster_run_id``."""
    cls = jobrun.params_class(kind)
    params = cls.from_json({old: value})
    assert getattr(params, new) == value
    assert old not in params.to_json() and params.to_json()[new] == value


def test_a_stored_job_with_an_old_name_runs(phantom_project):
    """Through the job runner, not only the parameter object: a stored ``operating-point``
    row naming its run ``run`` reaches the run's check (and says the run is missing)."""
    job = phantom_project.jobs.submit("operating-point", {"run": 9999})
    with pytest.raises(ValueError, match="no model run 9999"):
        jobrun.run_job(phantom_project, job)
    assert phantom_project.jobs.record(job).status == "error"


def test_the_gui_sends_one_name_per_id():
    """The GUI's submitters name a model run ``model_run_id`` and a cluster run ``cluster_run_id``."""
    import re
    from pathlib import Path

    gui = Path(jobrun.__file__).parent / "gui"
    old = re.compile(r"submit\([^)]*[{,]\s*\"(model_run|run|image_run|fusion_run)\"\s*:")
    params = re.compile(r"[{]\s*\"(model_run|run|image_run|fusion_run)\"\s*:")
    offenders = [f"{p.name}: {m.group(0)}" for p in gui.rglob("*.py")
                 for m in [*old.finditer(p.read_text(encoding="utf-8")),
                           *params.finditer(p.read_text(encoding="utf-8"))]]
    assert offenders == []


def test_every_job_kind_checks_its_parameters_or_says_why_not():
    assert set(jobrun.JOB_KINDS) == set(jobrun.JOB_PARAMS) | jobrun.UNCHECKED_KINDS
    assert not set(jobrun.JOB_PARAMS) & jobrun.UNCHECKED_KINDS


def test_the_data_kinds_check_their_whole_input_before_a_job_row(phantom_project, tmp_path):
    before = len(phantom_project.jobs.list())
    for kind, params, words in [
            ("import-clinical", {"path": str(tmp_path / "none.csv")}, "no such CSV file"),
            ("import-seg", {"paths": [str(tmp_path / "a.dcm")]}, "no such file or folder"),
            ("import-labels", {"path": str(tmp_path / "l.csv")}, "no such file"),
            ("import-annotations", {"path": str(tmp_path / "x")}, "no such folder"),
            ("export-annotations", {}, "folder to export into"),
            ("export-labels", {}, "file to export the labels to"),
            ("demo-archive", {"images": 0, "size": "huge"}, "--images must be ≥ 1, got 0. size must be one of")]:
        with pytest.raises(ValueError, match=f"^{kind}: .*{words}"):
            jobrun.run_sync(phantom_project, kind, params, quiet=True)
    assert len(phantom_project.jobs.list()) == before


def test_unknown_parameters_are_named():
    with pytest.raises(ValueError, match="train: unknown parameter epoch$"):
        TrainParams.from_json({"epoch": 3})


def test_problems_are_checked_against_the_project(phantom_project):
    ok = TrainParams(label_set="diagnosis", k=2)
    assert ok.problems(phantom_project) == []
    bad = TrainParams(label_set="diagnosis", k=2, size=-5, epochs=0)
    assert bad.problems(phantom_project) == ["Train for at least one epoch.",
                                             "The input size must be at least 32 pixels (not -5)."]
    with pytest.raises(ValueError, match="^train: Train for at least one epoch"):
        jobrun.check_params(phantom_project, "train", bad.to_json())
    assert ClusterParams(k=1).problems(phantom_project) == ["Clustering needs at least 2 clusters (k = 1)."]

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

"""Typed records: the store hands out frozen dataclasses with their JSON columns parsed."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from mskstudio.domain import ClusterRun, Job, ModelRun
from mskstudio.store import Project


def test_model_run_cluster_run_and_job_records(tmp_path):
    project = Project.create(tmp_path / "r")
    job_id = project.jobs.submit("train", {"label_set": "finding", "epochs": 3})
    run_id = project.models.create("classifier", "tinycnn", name="r1", params={"epochs": 3}, job_id=job_id)
    project.models.set_fields(run_id, split=json.dumps({"test": [1], "folds": []}),
                              metrics=json.dumps({"holdout": {"n": 1}}))
    run = project.models.record(run_id)
    assert isinstance(run, ModelRun) and run.id == run_id and run.kind == "classifier"
    assert run.params == {"epochs": 3} and run.metrics == {"holdout": {"n": 1}}
    assert run.split == {"test": [1], "folds": []} and run.job_id == job_id and not run.finished
    assert [r.id for r in project.models.records("classifier")] == [run_id]
    assert project.models.record(run_id + 1) is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.status = "done"

    job = project.jobs.record(job_id)
    assert isinstance(job, Job) and job.params == {"label_set": "finding", "epochs": 3}
    assert job.status == "submitted" and job.result is None and not job.finished
    project.jobs.finish(job_id, "done", result={"model_run_id": run_id})
    done = project.jobs.record(job_id)
    assert done.finished and done.result == {"model_run_id": run_id}
    assert [j.id for j in project.jobs.records()] == [job_id]

    cluster_run = project.clusters.create_run(image_ids=[], assign=np.zeros(0, int), distance=np.zeros(0),
                                              member_xy=np.zeros((0, 2)), features=None, k=2)
    rec = project.clusters.run_record(cluster_run)
    assert isinstance(rec, ClusterRun) and rec.k == 2 and rec.nmi_history == []
    assert [r.id for r in project.clusters.run_records()] == [cluster_run]
    assert project.clusters.run_records()[0].n_images == 0


def test_records_ignore_columns_a_later_schema_adds():
    row = {"id": 1, "kind": "train", "status": "done", "params": "{}", "result": "[1]", "new_column": 5}
    assert Job.from_row(row).result == [1]

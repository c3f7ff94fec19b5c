"""Typed records: the store hands out frozen dataclasses with their JSON columns parsed."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from mskstudio.domain import Box, ClusterRun, Image, Job, Label, LabelClass, Mask, ModelRun, Patient, Study
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


def _image_project(tmp_path):
    project = Project.create(tmp_path / "img")
    centre = project.images.centre_id("C1", "Centre one")
    pid = project.images.patient_id("P-1", original_id="MRN-1", sex="F")
    sid = project.images.study_id(pid, "1.2.3", study_date="2020-01-02", age_years=14.5, centre_id=centre)
    iid = project.images.add_image({"study_id": sid, "sop_uid": "1.2.3.4", "rows": 40, "cols": 30,
                                    "spacing_row_mm": 0.2, "spacing_col_mm": 0.25, "pixel_signed": 0,
                                    "burned_in_annotation": None, "is_screenshot": 1}, None)
    project.images.record_analysis_shape(iid, (20, 15))
    return project, pid, sid, iid


def test_patient_study_and_image_records(tmp_path):
    project, pid, sid, iid = _image_project(tmp_path)
    patient = project.images.find_patient("MRN-1")
    assert isinstance(patient, Patient) and patient.id == pid and patient.pseudonym == "P-1"
    assert patient.sex == "F" and project.images.patient(pid) == patient
    assert project.images.find_patient("nobody") is None and project.images.patient(pid + 1) is None

    study = project.images.study(sid)
    assert isinstance(study, Study) and study.patient_id == pid and study.centre == "C1"
    assert (study.study_uid, study.study_date, study.age_years) == ("1.2.3", "2020-01-02", 14.5)

    image = project.images.record(iid)
    assert isinstance(image, Image) and image.shape == (40, 30) and image.spacing == (0.2, 0.25)
    # the "h,w" text column is parsed once, into a tuple; 0/1 flags become bools, NULL stays unknown
    assert image.analysis_shape == (20, 15)
    assert image.is_screenshot is True and image.excluded is False and image.pixel_signed is False
    assert image.burned_in_annotation is None
    assert (image.patient_id, image.pseudonym, image.centre, image.study_date) == (pid, "P-1", "C1", "2020-01-02")
    assert (image.frame, image.n_frames) == (0, 1)
    assert project.images.record(iid + 1) is None
    assert [i.id for i in project.images.records()] == [iid]
    assert project.images.records([iid + 1, iid]) == [image]
    with pytest.raises(dataclasses.FrozenInstanceError):
        image.rows = 5
    # every column the store reads is on the record (no column silently dropped)
    row = project.db.one(f"{project.images._IMAGE_SQL} WHERE i.id = ?", (iid,))
    fields = {f.name for f in dataclasses.fields(Image)}
    assert set(row.keys()) <= fields


def test_image_record_round_trips_through_its_row(tmp_path):
    project, _, _, iid = _image_project(tmp_path)
    image = project.images.record(iid)
    row = dataclasses.asdict(image) | {"analysis_shape": "20,15", "is_screenshot": 1, "pixel_signed": 0}
    assert Image.from_row(row) == image
    assert Image.from_row({**row, "spacing_col_mm": None}).spacing is None


def test_label_records_carry_provenance(tmp_path):
    project, _, _, iid = _image_project(tmp_path)
    region = project.labels.label_set("region")
    knee, hip = project.labels.class_id(region, "knee"), project.labels.class_id(region, "hip")
    project.labels.set_label(iid, region, hip, source="model", run_id=7, confidence=0.75)
    project.labels.set_label(iid, region, knee, source="human", author="ann")
    human, model = project.labels.labels_of(iid)  # effective (human) first
    assert isinstance(human, Label) and (human.source, human.class_name, human.label_set) == ("human", "knee", "region")
    assert human.author == "ann" and human.reader_id is not None and human.run_id is None
    assert (model.source, model.class_id, model.run_id, model.confidence) == ("model", hip, 7, 0.75)
    assert model.reader_id is None and model.image_id == iid and model.label_set_id == region
    assert Label.from_row(dataclasses.asdict(human)) == human
    with pytest.raises(dataclasses.FrozenInstanceError):
        human.class_id = hip


def test_label_class_records_of_image_and_mask_sets(tmp_path):
    project = Project.create(tmp_path / "c")
    region = project.labels.label_set("region")
    hip = project.labels.class_id(region, "hip", color="#112233")
    knee = project.labels.class_id(region, "knee")
    reject = project.labels.class_id(region, "reject", is_reject=True)
    classes = project.labels.classes(region)
    assert all(isinstance(c, LabelClass) for c in classes)
    # listed in the order they were made (position), each with its set, colour and reject flag
    assert [(c.id, c.name, c.position) for c in classes] == [(hip, "hip", 0), (knee, "knee", 1), (reject, "reject", 2)]
    assert {c.label_set_id for c in classes} == {region} and classes[0].color == "#112233"
    assert [c.is_reject for c in classes] == [False, False, True]
    assert LabelClass.from_row(dataclasses.asdict(classes[2])) == classes[2]
    with pytest.raises(dataclasses.FrozenInstanceError):
        classes[0].name = "knee"
    # every column of the classes table is on the record (no column silently dropped)
    row = project.db.one("SELECT * FROM classes WHERE id = ?", (hip,))
    assert set(row.keys()) <= {f.name for f in dataclasses.fields(LabelClass)}
    # mask classes are the same records, from the mask label set
    tumour = project.annotations.class_id("tumour")
    mask_classes = project.annotations.classes()
    assert tumour in {c.id for c in mask_classes} and all(isinstance(c, LabelClass) for c in mask_classes)
    assert {c.label_set_id for c in mask_classes} == {project.annotations.mask_set_id()}


def test_mask_records_parse_the_bbox_once(tmp_path):
    project, _, _, iid = _image_project(tmp_path)
    tumour = project.annotations.class_id("tumour")
    pixels = np.zeros((40, 30), bool)
    pixels[5:15, 3:9] = True
    mask_id = project.annotations.save_mask(iid, tumour, pixels, annotator="ann")
    mask = project.annotations.mask_row(mask_id)
    assert isinstance(mask, Mask) and mask.bbox == (3, 5, 9, 15) and mask.bbox_text == "3,5,9,15"
    assert (mask.area_px, mask.class_name, mask.source, mask.annotator) == (60, "tumour", "human", "ann")
    assert mask.area_mm2 == pytest.approx(60 * 0.2 * 0.25) and mask.color.startswith("#")
    assert project.annotations.masks_of(iid) == [mask] == project.annotations.all_masks()
    assert Mask.from_row(dataclasses.asdict(mask)) == mask  # a parsed bbox passes through
    assert Mask.from_row({**dataclasses.asdict(mask), "bbox": "3,5,9,15"}) == mask
    assert Mask.from_row({**dataclasses.asdict(mask), "bbox": "not,a,box"}).bbox is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        mask.bbox = None


def test_box_records_of_people_and_of_a_detector(tmp_path):
    project, _, _, iid = _image_project(tmp_path)
    tumour = project.annotations.class_id("tumour")
    drawn = project.annotations.add_box(iid, tumour, (12, 4, 2, 20), annotator="ann")  # normalised
    box = project.annotations.box(drawn)
    assert isinstance(box, Box) and box.rect == (2.0, 4.0, 12.0, 20.0) and (box.width, box.height) == (10, 16)
    assert (box.class_name, box.source, box.annotator, box.score) == ("tumour", "human", "ann", None)
    assert project.annotations.boxes_of(iid) == [box]
    assert [(b.id, b.rect, b.class_name) for b in project.annotations.all_boxes()] == [(drawn, box.rect, "tumour")]
    run = project.models.create("detector", "resnet18")
    project.detections.replace_predictions(run, [iid], [(iid, tumour, (1, 1, 5, 5), 0.9)])
    (pred,) = project.detections.predictions(iid)
    assert (pred.score, pred.run_id, pred.review, pred.rect) == (0.9, run, None, (1.0, 1.0, 5.0, 5.0))
    assert project.annotations.boxes_of(iid) == [box]  # a prediction is no person's box
    assert Box.from_row(dataclasses.asdict(pred)) == pred
    with pytest.raises(dataclasses.FrozenInstanceError):
        box.x0 = 0.0

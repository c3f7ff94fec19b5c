"""A tiny detector learns planted bright squares on held-out patients better than a box at the
brightest blob; no patient in two folds; predicted boxes stored without touching human boxes;
accept / dismiss; cancel + resume; ONNX export parity; CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from detect_planted import add_planted_squares, brightest_blob_baseline  # noqa: E402

from mskstudio.jobs import Cancelled, CancelToken, JobContext  # noqa: E402

TINY = {"size": 64, "fpn_channels": 64, "k": 2, "test_fraction": 0.25, "batch_size": 4, "threads": 1}
# The learning test trains 2 folds x 24 epochs on 30 images of 64 px: about 2.4 CPU minutes
# (measured), which on the shared 2-core box under load can take 12 wall minutes.
LONG = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from mskstudio.ml.detect.train import run_train_det
    from mskstudio.store import Project

    root = tmp_path_factory.mktemp("det") / "planted.mskproj"
    project = Project.create(root)
    truth = add_planted_squares(project, 40, size=64, seed=0)
    result = run_train_det(project, {**TINY, "epochs": 24, "lr": 3e-3}, JobContext.null())
    yield project, truth, result
    project.close()


@LONG
def test_detector_beats_the_brightest_blob_on_held_out_patients(trained):
    from mskstudio.ml.detect import metrics as M

    project, truth, result = trained
    run = project.models.get(result["model_run_id"])
    assert run["kind"] == "detector" and run["status"] == "done"
    split = json.loads(run["split"])
    # no patient in two parts (the split checker ran; check again from the record)
    patient_of = project.images.patient_of()
    parts = [set(split["test"])] + [set(f["val"]) for f in split["folds"]]
    pats = [{patient_of[i] for i in p} for p in parts]
    for a in range(len(pats)):
        for b in range(a + 1, len(pats)):
            assert not pats[a] & pats[b]
    hold = project.models.metrics(run["id"])["holdout"]
    hit = hold["lesion"]["0.2"]["hit_rate"]
    assert hit["n"] == sum(len(truth[i]) for i in split["test"]) > 0
    # the baseline on the same held-out images, scored by the same code on the full grid
    test_truth = {i: np.asarray(truth[i], float).reshape(-1, 4) for i in split["test"]}
    base = brightest_blob_baseline(project, split["test"], side=13.0)
    b = M.lesion_metrics(test_truth, base, threshold=0.0, iou_thr=0.2)
    det = hold["lesion"]["0.2"]
    # Measured (seed 0): detector 9/10 lesions at 0.05 FP/image, AP50 0.87; baseline 7/10 at
    # 0.65 FP/image (one box an image), AP50 0.20.  The margins leave room for the run-to-run
    # wobble of threads and platforms, not for a detector that learnt nothing.
    assert hit["value"] >= b["hit_rate"]["value"] and hit["value"] >= 0.6, (hit, b["hit_rate"])
    assert det["fp_per_image"]["value"] < b["fp_per_image"]["value"] - 0.3
    assert hold["coco"]["ap50"] > M.coco_map(test_truth, base)["ap50"] + 0.3
    assert hold["study"]["sensitivity"]["n"] > 0 and "fp_per_lesion_free_image" in hold["lesion"]["0.2"]


@LONG
def test_detect_stores_model_boxes_and_keeps_human_boxes(trained):
    from mskstudio.ml.detect.predict import run_detect

    project, truth, result = trained
    human_before = [tuple(r) for r in project.db.query("SELECT * FROM boxes WHERE score IS NULL")]
    out = run_detect(project, {"run_id": result["model_run_id"], "min_score": 0.2}, JobContext.null())
    assert out["boxes"] > 0
    preds = project.detections.predictions(run_id=result["model_run_id"])
    assert all(r.source == "model" and r.score >= 0.2 for r in preds)
    # run again: replaced, not doubled; human boxes untouched; human-box queries skip predictions
    again = run_detect(project, {"run_id": result["model_run_id"], "min_score": 0.2}, JobContext.null())
    assert again["boxes"] == out["boxes"] == len(project.detections.predictions(run_id=result["model_run_id"]))
    assert [tuple(r) for r in project.db.query("SELECT * FROM boxes WHERE score IS NULL")] == human_before
    preds = project.detections.predictions(run_id=result["model_run_id"])  # the new rows
    image_id = preds[0].image_id
    assert all(b.score is None for b in project.annotations.boxes_of(image_id))
    # accept -> a new human box, audited; dismiss -> hidden
    n_human = len(project.annotations.boxes_of(image_id))
    new_id = project.detections.accept(preds[0].id)
    assert project.annotations.box(new_id).source == "human"
    assert len(project.annotations.boxes_of(image_id)) == n_human + 1
    project.detections.dismiss(preds[-1].id)
    left = {r.id for r in project.detections.predictions(run_id=result["model_run_id"])}
    assert preds[0].id not in left and preds[-1].id not in left
    actions = {r[0] for r in project.db.query("SELECT action FROM audit")}
    assert {"detect.accept", "detect.dismiss", "detect.store"} <= actions
    with pytest.raises(ValueError, match="no image"):
        run_detect(project, {"run_id": result["model_run_id"], "image_ids": [10 ** 6]}, JobContext.null())


@LONG
def test_onnx_export_parity(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    from mskstudio.ml.detect.export import export_detector

    project, _, result = trained
    out = export_detector(project, result["model_run_id"], tmp_path / "onnx", n_parity=3)
    assert out["parity"]["ok"], out["parity"]
    assert out["parity"]["max_abs_boxes"] < 1e-2
    assert (tmp_path / "onnx" / "model_card.md").read_text().count("hit rate") >= 1


def test_cancel_then_resume_finishes_the_run(tmp_path):
    from mskstudio.ml.detect.train import run_train_det
    from mskstudio.store import Project

    project = Project.create(tmp_path / "c.mskproj")
    add_planted_squares(project, 12, size=64, seed=1)
    token = CancelToken()
    epochs_seen = []

    class Sink:
        def on_progress(self, fraction, message, eta_s):
            pass

        def on_metric(self, name, value, step):
            epochs_seen.append((name, step))
            if name.startswith("fold1/") and step == 0:
                token.cancel()  # stop during fold 1's second epoch

        def on_log(self, message):
            pass

    params = {**TINY, "epochs": 2}
    with pytest.raises(Cancelled):
        run_train_det(project, params, JobContext(sink=Sink(), token=token))
    run = project.models.list("detector")[0]
    assert run["status"] == "cancelled" and run["checkpoint_sha"]
    res = run_train_det(project, {"resume": run["id"]}, JobContext.null())
    assert res["model_run_id"] == run["id"]
    assert project.models.get(run["id"])["status"] == "done"
    ckpt_hist = project.models.metrics(run["id"])
    assert ckpt_hist["n_folds"] == 2
    with pytest.raises(ValueError, match="already finished"):
        run_train_det(project, {"resume": run["id"]}, JobContext.null())

    # Detection stopped after its first chunk of images, resumed: only the rest is detected,
    # and the boxes and summary are those of an uninterrupted run.
    from mskstudio.jobrun import run_job
    from mskstudio.ml.detect.predict import run_detect

    whole = run_detect(project, {"run_id": run["id"], "min_score": 0.0}, JobContext.null())
    boxes = [tuple(r) for r in project.db.query("SELECT image_id, x0, y0, x1, y1, score FROM boxes "
                                                "WHERE score IS NOT NULL ORDER BY id")]
    project.db.execute("DELETE FROM boxes WHERE score IS NOT NULL")
    token, logs = CancelToken(), []

    class Sink:
        def __init__(self, stop: bool):
            self.stop = stop

        def on_progress(self, fraction, message, eta_s):
            if self.stop and fraction > 0.3:  # after the first chunk of images
                token.cancel()

        def on_metric(self, name, value, step):
            pass

        def on_log(self, message):
            logs.append(message)

    job = project.jobs.submit("detect", {"run_id": run["id"], "min_score": 0.0})
    with pytest.raises(Cancelled):
        run_job(project, job, sink=Sink(True), token=token)
    first = project.db.scalar("SELECT COUNT(DISTINCT image_id) FROM boxes WHERE score IS NOT NULL")
    assert 0 < first < len(project.images.ids())
    assert run_job(project, project.jobs.resubmit(job), sink=Sink(False)) == whole
    assert any(m.startswith("resuming: ") for m in logs)
    assert [tuple(r) for r in project.db.query("SELECT image_id, x0, y0, x1, y1, score FROM boxes "
                                               "WHERE score IS NOT NULL ORDER BY image_id, id")] == \
        sorted(boxes, key=lambda b: b[0])
    project.close()


def test_train_det_refuses_a_project_without_lesions(new_project):
    from mskstudio.ml.detect.train import run_train_det
    from mskstudio.ml.synthetic import add_synthetic_images

    add_synthetic_images(new_project, 8, size=64)
    with pytest.raises(ValueError, match="at least 4 images with a lesion"):
        run_train_det(new_project, TINY, JobContext.null())
    with pytest.raises(ValueError, match="multiple of 32"):
        run_train_det(new_project, {**TINY, "size": 100}, JobContext.null())


def test_cli_train_det_detect_evaluate(tmp_path, capsys):
    from mskstudio.cli import main
    from mskstudio.store import Project

    path = tmp_path / "cli.mskproj"
    with Project.create(path) as project:
        add_planted_squares(project, 12, size=64, seed=2)
    assert main(["train-det", str(path), "--size", "64", "--fpn-channels", "64", "--epochs", "1",
                 "--folds", "2", "--batch-size", "4", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "hit rate" in out and "study calls" in out
    with Project.open(path) as project:
        run_id = project.models.list("detector")[0]["id"]
    assert main(["detect", str(path), "--min-score", "0.0"]) == 0
    assert f"detector run {run_id}:" in capsys.readouterr().out
    assert main(["evaluate", str(path), str(run_id)]) == 0
    assert "hold-out patients (fold ensemble)" in capsys.readouterr().out
    assert main(["train-det", str(path), "--size", "100"]) == 1
    assert "multiple of 32" in capsys.readouterr().err

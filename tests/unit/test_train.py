"""Training engine: weights, a tiny run on a synthetic project (cancel + resume), predict, cascade."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mskstudio.jobrun import JOB_KINDS, submit_and_run
from mskstudio.jobs import Cancelled, CancelToken, RecordingSink
from mskstudio.ml.classify.train import class_weights
from mskstudio.ml.splits import check_split

FAST = {"arch": "tinycnn", "size": 64, "k": 2, "epochs": 4, "batch_size": 16, "lr": 3e-3,
        "n_boot": 100, "patience": 10, "seed": 0}


def test_class_weights_by_hand():
    counts = np.array([10, 30, 60, 0])
    # frequencies of present classes 0.1, 0.3, 0.6 -> median 0.3 -> 3, 1, 0.5; absent class 0
    assert class_weights(counts, "median") == pytest.approx([3.0, 1.0, 0.5, 0.0])
    # N / (C * n_c) with C = 3 present classes
    assert class_weights(counts, "inverse") == pytest.approx([100 / 30, 100 / 90, 100 / 180, 0.0])
    assert class_weights(counts, "none").tolist() == [1, 1, 1, 0]
    with pytest.raises(ValueError):
        class_weights(counts, "focal")


def test_job_kinds_registered():
    for kind in ("train", "predict", "explain"):
        assert kind in JOB_KINDS


class _CancelAfterFirstEpoch(RecordingSink):
    def __init__(self, token):
        super().__init__()
        self.token = token

    def on_metric(self, name, value, step):
        super().on_metric(name, value, step)
        if name == "fold0/val_acc":
            self.token.cancel()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import torch

    from mskstudio.ml.synthetic import add_synthetic_images
    from mskstudio.store import Project

    torch.set_num_threads(2)
    project = Project.create(tmp_path_factory.mktemp("train") / "t.mskproj")
    regions = add_synthetic_images(project, 80, seed=1, size=64, thumbnails=False)
    token = CancelToken()
    sink = _CancelAfterFirstEpoch(token)
    with pytest.raises(Cancelled):
        submit_and_run(project, "train", {"label_set": "region", **FAST}, sink=sink, token=token)
    run = project.models.list("classifier")[0]
    cancelled_status = run["status"]
    from mskstudio.ml.models import load_checkpoint

    cancelled_ckpt = load_checkpoint(project, run["id"])
    sink2 = RecordingSink()
    result = submit_and_run(project, "train", {"resume": run["id"]}, sink=sink2)
    yield {"project": project, "result": result, "regions": regions, "first": sink, "second": sink2,
           "cancelled_status": cancelled_status, "cancelled_ckpt": cancelled_ckpt}
    project.close()


def test_tiny_run_beats_chance_on_the_holdout(trained):
    project, result = trained["project"], trained["result"]
    m = project.models.metrics(result["model_run_id"])
    hold = m["holdout"]
    y = np.asarray(hold["y_true"])
    majority = np.bincount(y).max() / len(y)  # chance = always the most frequent class
    assert hold["n"] == len(y) > 0
    assert hold["accuracy"]["value"] > majority
    assert hold["accuracy"]["ci"][0] <= hold["accuracy"]["value"] <= hold["accuracy"]["ci"][1]
    assert len(m["main"]["folds"]) == 2 and m["main"]["oof"]["n"] + hold["n"] == 80
    assert "top2_accuracy" in hold and "confusion" in hold and "auc" in hold["macro"]
    # out-of-fold probabilities are kept per image: the validation parts, each image once
    oof = m["main"]["oof"]
    val_ids = [i for fold in json.loads(project.models.get(result["model_run_id"])["split"])["folds"]
               for i in fold["val"]]
    assert sorted(oof["image_ids"]) == sorted(val_ids) and len(oof["probs"]) == oof["n"]
    cm = np.zeros_like(np.asarray(oof["confusion"]))
    for t, p in zip(oof["y_true"], np.asarray(oof["probs"]).argmax(1), strict=True):
        cm[t, p] += 1
    assert cm.tolist() == oof["confusion"]


def test_run_record_split_and_checkpoint(trained):
    project, result = trained["project"], trained["result"]
    row = project.models.get(result["model_run_id"])
    assert row["status"] == "done" and row["kind"] == "classifier" and row["arch"] == "tinycnn"
    assert row["checkpoint_sha"] and project.blobs.exists(row["checkpoint_sha"])
    assert row["data_hash"] and json.loads(row["params"])["k"] == 2
    split = json.loads(row["split"])
    check_split(split, project.images.patient_of())
    test_patients = {project.images.patient_of()[i] for i in split["test"]}
    for fold in split["folds"]:
        assert not {project.images.patient_of()[i] for i in fold["train"] + fold["val"]} & test_patients


def test_cancel_then_resume_continues_at_the_next_epoch(trained):
    assert trained["cancelled_status"] == "cancelled"
    first = [s for n, v, s in trained["first"].metrics if n == "fold0/train_loss"]
    second = [s for n, v, s in trained["second"].metrics if n == "fold0/train_loss"]
    assert first == [0]
    assert second == [1, 2, 3]  # epoch 0 was not trained again
    project, result = trained["project"], trained["result"]
    hist = project.models.metrics(result["model_run_id"])["main"]["folds"][0]["history"]
    assert [h["epoch"] for h in hist] == [0, 1, 2, 3]
    # metrics reach the jobs table too, with step = epoch
    job = project.models.get(result["model_run_id"])["job_id"]
    steps = project.db.query("SELECT step FROM job_metrics WHERE job_id = ? AND name = 'fold1/val_loss'",
                             (job,))
    assert sorted(r[0] for r in steps) == [0, 1, 2, 3]


def test_a_checkpoint_at_the_best_epoch_keeps_one_copy_and_resumes_it_as_the_best(trained):
    """The per-epoch checkpoint stores the best weights apart only when they are not the
    current epoch's; a fold resumed from such a checkpoint keeps the model's weights as its best."""
    import torch

    from mskstudio.jobs import JobContext
    from mskstudio.ml.classify.train_loop import FoldData, FoldPlan, train_fold

    ckpt = trained["cancelled_ckpt"]
    assert ckpt["epoch"] == 1 and ckpt["best_epoch"] == 0  # the first epoch is always the best so far
    assert ckpt["best_state"] is None and ckpt["model"]
    project = trained["project"]
    run = project.models.record(trained["result"]["model_run_id"])
    p = {**run.params, "epochs": ckpt["epoch"]}  # nothing left to train: the fold returns what it resumed
    fold = run.split["folds"][0]
    ids = fold["train"] + fold["val"]
    ctx = JobContext(RecordingSink())
    base = FoldData(project, ids, [0] * len(ids), p, ctx)
    names = run.metrics["classes"]
    plan = FoldPlan(base, fold["train"], fold["val"], dict.fromkeys(ids, 0), names, None, "fold0", ckpt)
    out = train_fold(plan, p, torch.device("cpu"), ctx, save=lambda s: None)
    assert out["best_epoch"] == 0 and out["state"].keys() == ckpt["model"].keys()
    assert all(torch.equal(out["state"][k], ckpt["model"][k]) for k in ckpt["model"])


def test_predict_stores_predictions_and_model_labels(trained):
    from mskstudio.ml.classify.predict import predictions

    project, result = trained["project"], trained["result"]
    run_id = result["model_run_id"]
    ls = project.labels.label_set("region")
    some = project.images.ids()[:10]
    human_class = project.labels.class_id(ls, "hand")
    project.labels.set_label(some[0], ls, human_class, source="human")
    out = submit_and_run(project, "predict", {"model_run": run_id, "image_ids": some})
    assert out["predicted"] == 10
    rows = predictions(project, run_id)
    assert len(rows) == 10
    for r in rows:
        assert sum(r["probs"].values()) == pytest.approx(1.0, abs=1e-4)
        assert r["confidence"] == pytest.approx(max(r["probs"].values()), abs=1e-5)
        assert r["rejected"] in (0, 1)
    model_labels = project.labels.effective(ls, sources=("model",))
    assert set(model_labels) <= set(some) and len(model_labels) == out["labelled"]
    assert project.labels.effective(ls)[some[0]] == human_class  # human wins


def test_truth_sets_are_refused(trained):
    from mskstudio.jobs import JobContext
    from mskstudio.ml.classify.train import run_train

    project = trained["project"]
    ls = project.labels.label_set("truth:region")
    cls = project.labels.class_id(ls, "x")
    project.labels.set_labels(project.images.ids()[:4], ls, cls, source="import")
    with pytest.raises(ValueError, match="scoring only"):
        run_train(project, {"label_set": "truth:region", **FAST}, JobContext.null())


def test_cascade_training_scores_the_holdout_as_a_cascade(trained):
    from mskstudio.jobs import JobContext
    from mskstudio.ml.classify.predict import predict_probs
    from mskstudio.ml.classify.train import run_train

    project, regions = trained["project"], trained["regions"]
    ls = project.labels.label_set("finding")
    for name in ("healthy", "long", "pair", "hand"):
        cid = project.labels.class_id(ls, name)
        ids = [i for i, r in regions.items() if (r if r != "round" else "healthy") == name]
        project.labels.set_labels(ids, ls, cid, source="import")
    res = run_train(project, {"label_set": "finding", **FAST, "epochs": 1, "n_boot": 0, "cascade": "healthy",
                              "reject": "none"}, JobContext.null())
    m = project.models.metrics(res["model_run_id"])
    assert set(m) >= {"stage1", "stage2", "holdout"}
    hold = m["holdout"]
    assert hold["classes"][0] == "healthy" and "stage1" in hold and hold["n"] == res["holdout_n"]
    out = predict_probs(project, res["model_run_id"], project.images.ids()[:5])
    assert out["probs"].shape == (5, 4)
    assert out["probs"].sum(1) == pytest.approx(np.ones(5))


def test_classifier_run_gives_retrieval_embeddings(trained):
    """The classifier's checkpoint feeds retrieval: its fold encoders' features, side by side."""
    from mskstudio.ml.classify.classifier import load_ensemble
    from mskstudio.ml.retrieve import embeddings

    project, run_id = trained["project"], trained["result"]["model_run_id"]
    ids = project.images.ids()[:12]
    folds = load_ensemble(project, run_id)["main"].models
    x = embeddings.compute(project, run_id, ids)
    assert x.shape == (12, sum(m.feature_dim for m in folds))
    assert np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-4)
    assert np.unique(x.round(4), axis=0).shape[0] > 1  # images get different embeddings


def test_trained_run_exports_to_onnx_with_parity_and_card(trained, tmp_path):
    from mskstudio.ml.deploy.onnx_export import export_run

    project, run_id = trained["project"], trained["result"]["model_run_id"]
    result = export_run(project, run_id, tmp_path)
    roles = {f["role"]: f for f in result["files"]}
    assert set(roles) == {"classifier", "embedder"}
    assert all(f["parity"]["max_abs_diff"] < 1e-4 and f["parity"]["n"] > 0 for f in roles.values())
    card = (tmp_path / "model_card.md").read_text()
    hold = project.models.metrics(run_id)["holdout"]
    assert f"n = {hold['n']}" in card and f"accuracy: {hold['accuracy']['value']:.3g} (95 % CI" in card

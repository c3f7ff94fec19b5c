"""Fusion on out-of-fold embeddings, and fusion runs used wherever an image run is:
predict, similar cases, the noise queue (ml/fuse/embed.py, ml/fuse/serve.py).

The planted set of test_fuse_joint: the class is drawn per patient, so only the clinical
data (ALP, age) tells it; the synthetic images carry none of it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from fuse_fixture import FAST, FIELDS, plant

from mskstudio.jobrun import submit_and_run
from mskstudio.jobs import JobContext


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import torch

    from mskstudio.ml.fuse.fuse import run_fuse
    from mskstudio.store import Project

    torch.set_num_threads(1)
    project = Project.create(tmp_path_factory.mktemp("serve") / "s.mskproj")
    plant(project, n_images=100, seed=11)
    image = submit_and_run(project, "train", {"label_set": "planted", **FAST, "epochs": 3})["model_run_id"]
    late = run_fuse(project, {"image_run": image, "mode": "late", "clinical": FIELDS, "n_boot": 50},
                    JobContext.null())["model_run_id"]
    emb = run_fuse(project, {"image_run": image, "mode": "stacking", "learner": "logreg", "clinical": FIELDS,
                             "image_input": "embedding", "pca": 4, "n_boot": 50},
                   JobContext.null())["model_run_id"]
    yield project, image, late, emb
    project.close()


# ---- fusion on out-of-fold embeddings -------------------------------------------------------------
def test_no_fold_model_embeds_an_image_it_trained_on(served):
    from mskstudio.ml.fuse.embed import fold_embeddings, oof_embeddings
    from mskstudio.ml.fuse.image_run import load_image_run

    project, image, _late, _emb = served
    ir = load_image_run(project, image)
    e = oof_embeddings(project, ir)
    folds = ir.split["folds"]
    for f, embedded in e.plan.items():
        assert not set(embedded) & set(folds[f]["train"]), f"fold model {f} embedded its own training images"
    # Each CV row is its out-of-fold model's embedding (recomputed here, not read from the cache).
    fresh = fold_embeddings(project, image, ir.cv_ids[:6])
    for r in range(6):
        assert np.allclose(e.cv[r], fresh[int(ir.fold[r])][r], atol=1e-5)
        assert ir.cv_ids[r] in folds[int(ir.fold[r])]["val"]
    assert len(e.test_views) == len(folds) and all(len(v) == len(ir.test_ids) for v in e.test_views)


def test_the_pca_is_fitted_on_the_fit_rows_only():
    from mskstudio.ml.fuse import crossfit as cfm

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 10))
    x[30:] += 1000.0  # the rows being scored: a PCA that saw them would centre on them
    y = np.arange(40) % 2
    design = cfm.Design(x, [], None, y, 2, image_pca=3)
    fitted = cfm.fit(design, np.arange(30), "logreg")
    assert fitted.columns == ["image:pc1", "image:pc2", "image:pc3"]
    assert np.allclose(fitted.pca.mean_, x[:30].mean(0))
    fold = np.repeat([0, 1, 2], 10)
    cf = cfm.cross_fit(cfm.Design(x[:30], [], None, y[:30], 2, image_pca=3), fold, 30, "logreg")
    for step in cf.plan[:-1]:
        assert not set(step["fit"]) & set(step["score"])


def test_embedding_fusion_run_is_stored_and_learns(served):
    project, image, _late, emb = served
    m = project.models.metrics(emb)
    assert m["fusion"]["image_input"] == "embedding"
    assert [c for c in m["fusion"]["columns"] if c.startswith("image:")] == [f"image:pc{j}" for j in (1, 2, 3, 4)]
    img = project.models.metrics(image)
    assert m["holdout"]["image_ids"] == img["holdout"]["image_ids"]
    assert m["holdout"]["accuracy"]["value"] > img["holdout"]["accuracy"]["value"]


# ---- a fusion run wherever an image run -----------------------------------------------------------
@pytest.mark.parametrize("which", ["late", "emb"])
def test_predict_with_a_fusion_run_reproduces_its_holdout(served, which):
    from mskstudio.ml.classify.predict import predict_probs

    project, _image, late, emb = served
    run = late if which == "late" else emb
    hold = project.models.metrics(run)["holdout"]
    out = predict_probs(project, run, hold["image_ids"])
    assert np.abs(out["probs"] - np.asarray(hold["probs"])).max() < 1e-3
    assert out["class_names"] == ["low", "high"] or set(out["class_names"]) == {"low", "high"}


def test_predict_job_stores_fusion_predictions_and_model_labels(served):
    project, _image, late, _emb = served
    res = submit_and_run(project, "predict", {"model_run_id": late})
    assert res["predicted"] == len(project.images.ids())
    rows = project.models.predictions(late)
    assert len(rows) == res["predicted"]
    ls = project.labels.find_label_set("planted")
    labelled = project.labels.of_run(ls, late, source="model")
    assert labelled  # model labels carry the fusion run as their origin


def test_a_learner_refitted_for_an_old_run_matches(served):
    from mskstudio.ml.fuse.serve import load_fitted

    project, _image, late, _emb = served
    fitted = load_fitted(project, late)
    sha = project.models.get(late)["checkpoint_sha"]
    project.db.execute("UPDATE model_runs SET checkpoint_sha = NULL WHERE id = ?", (late,))
    refit = load_fitted(project, late)  # a run stored before its learner was
    assert project.models.get(late)["checkpoint_sha"] is not None
    assert fitted.columns == refit.columns
    assert np.allclose(fitted.model[-1].coef_, refit.model[-1].coef_)
    assert sha


def test_similar_cases_with_a_fusion_run_use_the_clinical_data(served):
    from mskstudio.ml.retrieve import embeddings as emb
    from mskstudio.ml.retrieve.similar import leave_one_patient_out_knn

    project, image, late, _emb = served
    ls = project.labels.find_label_set("planted")
    truth = project.labels.effective(ls)
    ids = sorted(truth)
    patient_of = project.images.patient_of(ids)
    patients = np.asarray([patient_of[i] for i in ids])
    y = np.asarray([truth[i] for i in ids])
    agree = {}
    for rep in (image, late):
        x, _ = emb.load(project, rep, ids)
        _, rows = leave_one_patient_out_knn(x, patients, 5)
        agree[rep] = float(np.mean([np.mean(y[r[r >= 0]] == y[j]) for j, r in enumerate(rows)]))
    dim_image = emb.load(project, image, ids[:1])[0].shape[1]
    assert emb.load(project, late, ids[:1])[0].shape[1] > dim_image
    print(f"precision@5 of the planted class: image run {agree[image]:.3f}, fusion run {agree[late]:.3f}")
    assert agree[late] > agree[image] + 0.15


def test_noise_queue_with_a_fusion_run(served):
    from mskstudio.ml.noise.queue import noise_queue

    project, _image, late, _emb = served
    submit_and_run(project, "predict", {"model_run_id": late, "label": False})
    items = noise_queue(project, "planted", run_id=late, classifier_run_id=late, k=5, include_agreeing=True)
    assert items and all(it.classifier is not None for it in items)
    # Out of sample: the fusion run's own out-of-fold and hold-out probabilities are used.
    m = project.models.metrics(late)
    first = m["main"]["oof"]["image_ids"][0]
    item = next(it for it in items if it.image_id == first)
    names = m["classes"]
    given = next(n for n in names if n == item.given)
    p = m["main"]["oof"]["probs"][0][names.index(given)]
    assert item.classifier_p_given == pytest.approx(p, abs=1e-4)
    res = submit_and_run(project, "noise-queue", {"label_set": "planted", "run_id": late,
                                                  "classifier_run_id": late, "k": 5})
    assert json.dumps(res)


def test_onnx_export_of_a_fusion_run_says_what_to_export(served, tmp_path):
    from mskstudio.ml.deploy.onnx_export import export_run

    project, image, late, _emb = served
    with pytest.raises(ValueError, match=rf"model run {late} is a fusion run .* export that classifier run"):
        export_run(project, late, tmp_path)

"""Joint end-to-end fusion: the classifier's metadata branch (ml/classify + ml/fuse/joint.py).

A planted set: two classes drawn per patient at random, so the synthetic images carry no
signal about them, while the patient's ALP (in multiples of its kit's upper limit, two kits)
and age do.  An image-only model cannot beat chance on held-out patients; the joint model must.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from fuse_fixture import FAST, FIELDS, plant

from mskstudio.jobrun import submit_and_run
from mskstudio.jobs import Cancelled, CancelToken, RecordingSink


class _CancelAfterFirstEpoch(RecordingSink):
    def __init__(self, token):
        super().__init__()
        self.token = token

    def on_metric(self, name, value, step):
        super().on_metric(name, value, step)
        if name == "fold0/val_acc":
            self.token.cancel()


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    import torch

    from mskstudio.store import Project

    torch.set_num_threads(1)
    project = Project.create(tmp_path_factory.mktemp("joint") / "j.mskproj")
    plant(project)
    image = submit_and_run(project, "train", {"label_set": "planted", **FAST})
    token = CancelToken()
    with pytest.raises(Cancelled):
        submit_and_run(project, "train", {"label_set": "planted", **FAST, "clinical": FIELDS},
                       sink=_CancelAfterFirstEpoch(token), token=token)
    joint_id = [r for r in project.models.list("classifier") if r["id"] != image["model_run_id"]][0]["id"]
    sink = RecordingSink()
    joint = submit_and_run(project, "train", {"resume": joint_id}, sink=sink)
    yield project, image, joint, sink
    project.close()


def test_joint_model_learns_the_clinical_signal_the_images_lack(planted):
    project, image, joint, _ = planted
    assert joint["holdout_n"] == image["holdout_n"] >= 15  # the same held-out patients
    hold_img = project.models.metrics(image["model_run_id"])["holdout"]
    hold_joint = project.models.metrics(joint["model_run_id"])["holdout"]
    assert hold_img["image_ids"] == hold_joint["image_ids"]
    assert joint["holdout_accuracy"] >= 0.8
    assert joint["holdout_accuracy"] > image["holdout_accuracy"] + 0.15
    assert hold_joint["macro"]["auc"]["value"] > hold_img["macro"]["auc"]["value"]


def test_resume_continues_the_cancelled_joint_run(planted):
    project, _image, joint, sink = planted
    resumed = [m for m in sink.metrics if m[0] == "fold0/val_acc"]
    assert resumed and resumed[0][2] == 1  # epoch 2: the first was done before the cancel
    m = project.models.metrics(joint["model_run_id"])
    assert [f["epochs_run"] for f in m["main"]["folds"]] == [FAST["epochs"]] * FAST["k"]


def test_normalisation_is_fitted_per_fold_and_stored(planted):
    from mskstudio.ml.classify.classifier import load_ensemble

    project, _image, joint, _ = planted
    run = project.models.record(joint["model_run_id"])
    assert run.params["clinical"] == ["age", "sex", "lab:ALP"]
    spec = run.metrics["clinical"]
    assert spec["fields"] == ["age", "sex", "lab:ALP"]
    assert "lab:ALP" in spec["columns"] and "lab:ALP:missing" in spec["columns"]
    ens = load_ensemble(project, joint["model_run_id"])["main"]
    assert ens.clinical["columns"] == spec["columns"]
    # Each fold model's imputation/scale came from its own training rows: they differ by fold.
    means = [m.clin_mean.numpy() for m in ens.models]
    assert not np.allclose(means[0], means[1])
    split = json.loads(project.models.get(joint["model_run_id"])["split"])
    raw = ens.clinical_vectors(project, split["folds"][0]["train"])
    age = spec["columns"].index("age")
    ages = raw[:, age]
    imputed = np.where(np.isnan(ages), np.nanmedian(ages), ages)
    assert means[0][age] == pytest.approx(imputed.mean(), rel=1e-5)
    assert ens.models[0].clin_scale.numpy()[age] == pytest.approx(1 / imputed.std(), rel=1e-4)


def test_predict_reproduces_the_holdout_scores(planted):
    from mskstudio.ml.classify.predict import predict_probs

    project, _image, joint, _ = planted
    hold = project.models.metrics(joint["model_run_id"])["holdout"]
    out = predict_probs(project, joint["model_run_id"], hold["image_ids"])
    assert np.abs(out["probs"] - np.asarray(hold["probs"])).max() < 1e-3


def test_two_input_onnx_parity_and_card(planted, tmp_path):
    import onnxruntime as ort
    import torch

    from mskstudio.ml.classify.classifier import load_ensemble
    from mskstudio.ml.deploy.onnx_export import export_run, sample_inputs

    project, _image, joint, _ = planted
    run_id = joint["model_run_id"]
    res = export_run(project, run_id, tmp_path, roles=["classifier"])
    rec = res["files"][0]
    assert rec["inputs"] == ["image", "clinical"] and rec["parity"]["ok"]
    sess = ort.InferenceSession(str(tmp_path / rec["file"]), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["image", "clinical"]
    ens = load_ensemble(project, run_id)["main"]
    ids = project.images.ids()[:6]
    x, _ = sample_inputs(project, ens.size, 6, ids)
    c = ens.clinical_vectors(project, ids)
    c[0, :] = np.nan  # a patient with nothing recorded: imputed inside the graph
    got = sess.run(None, {"image": x, "clinical": c})[0]
    with torch.inference_mode():
        ref = torch.softmax(ens.logits(torch.from_numpy(x), torch.from_numpy(c)), 1).numpy()
    assert np.abs(got - ref).max() < 1e-4
    card = json.loads((tmp_path / "model_card.json").read_text())
    assert card["clinical_input"]["fields"] == ["age", "sex", "lab:ALP"]
    md = (tmp_path / "model_card.md").read_text()
    assert "Clinical input (joint fusion)" in md and "lab:ALP" in md and "upper limit" in md


def test_joint_refusals(planted):
    from mskstudio.jobrun import check_params

    project, *_ = planted
    with pytest.raises(Exception, match="shoe"):
        check_params(project, "train", {"label_set": "planted", "clinical": "age,shoe"})
    with pytest.raises(Exception, match="cascade"):
        check_params(project, "train", {"label_set": "planted", "clinical": "age", "cascade": "low"})


def test_joint_cli_under_ddp_two_processes(tmp_path):
    """``train --fusion joint --nproc 2``: torchrun, gloo on CPU; the other rank gets the
    clinical vectors in the broadcast plan (it never opens the project)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from mskstudio.store import Project

    path = tmp_path / "ddp.mskproj"
    with Project.create(path) as project:
        plant(project, n_images=80, seed=5)
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1", "MSKSTUDIO_DDP_TIMEOUT_S": "60"}
    args = ["--arch", "tinycnn", "--size", "64", "--folds", "2", "--epochs", "12", "--batch-size", "16",
            "--lr", "1e-2", "--no-augment", "--device", "cpu", "--fusion", "joint", "--clinical", FIELDS]
    proc = subprocess.run([sys.executable, "-m", "mskstudio", "train", str(path), "planted", *args,
                           "--nproc", "2", "--json"], env=env, cwd=repo, capture_output=True, text=True,
                          timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with Project.open(path) as project:
        run = project.models.record(project.models.list("classifier")[0]["id"])
        assert run.status == "done" and run.params["clinical"] == ["age", "sex", "lab:ALP"]
        hold = run.metrics["holdout"]
        assert run.metrics["clinical"]["fields"] == ["age", "sex", "lab:ALP"]
        print(f"DDP joint hold-out accuracy {hold['accuracy']['value']:.3f} (n={hold['n']})")
        assert hold["accuracy"]["value"] >= 0.75


def test_gradcam_of_a_joint_model_holds_the_case_clinical_data(planted):
    from mskstudio.ml.explain.gradcam import explain

    project, _image, joint, _ = planted
    image_id = project.models.metrics(joint["model_run_id"])["holdout"]["image_ids"][0]
    heat = explain(project, joint["model_run_id"], image_id, use_cache=False, scales=[1.0])
    assert heat.ndim == 2 and np.isfinite(heat).all()

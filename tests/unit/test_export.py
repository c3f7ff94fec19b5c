"""ONNX export: parity with torch on real project images, dynamic batch, model card, backends."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")


class TinyNet(torch.nn.Module):
    def __init__(self, out: int = 3):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 8, 3, stride=2, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8, out)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(x.mean((2, 3)))


@pytest.fixture
def syn_project(new_project):
    from mskstudio.ml.synthetic import add_synthetic_images

    add_synthetic_images(new_project, 12, seed=1, size=48)
    return new_project


def _deepcluster_run(project, size=64):
    from mskstudio.ml.models import build_backbone

    torch.manual_seed(0)
    bb, _ = build_backbone("resnet18")
    buf = io.BytesIO()
    torch.save({"arch": "resnet18", "backbone": bb.state_dict(), "input_size": size, "epoch": 0}, buf)
    run = project.models.create("deepcluster", "resnet18", name="dc test")
    project.models.set_checkpoint(run, project.blobs.put_bytes(buf.getvalue()),
                                  metrics={"nmi": {"mean": 0.5, "ci95": [0.4, 0.6]}})
    project.models.set_status(run, "done")
    return run


def test_module_parity_dynamic_batch_on_real_images(syn_project, tmp_path):
    from mskstudio.ml.deploy.onnx_export import export_module, sample_inputs
    from mskstudio.ml.deploy.onnx_runtime import OnnxBackend

    torch.manual_seed(0)
    net = TinyNet().eval()
    x, ids = sample_inputs(syn_project, 40, n=6)
    assert x.shape == (6, 1, 40, 40) and len(ids) == 6 and x.max() > 0.1
    rec = export_module(net, tmp_path, role="classifier", size=40, name="tiny", sample=x)
    assert rec["parity"]["max_abs_diff"] < 1e-4 and rec["parity"]["ok"]
    out = OnnxBackend(tmp_path / "tiny.onnx")(x[:1])          # another batch size than exported
    assert out.shape == (1, 3) and abs(float(out.sum()) - 1.0) < 1e-5   # softmax inside


def test_export_run_writes_card(syn_project, tmp_path):
    from mskstudio.ml.deploy.onnx_export import export_run

    run = _deepcluster_run(syn_project)
    res = export_run(syn_project, run, tmp_path / "out", n_parity=4)
    f = res["files"][0]
    assert f["role"] == "embedder" and f["parity"]["max_abs_diff"] < 1e-4 and len(f["parity_image_ids"]) == 4
    card = json.loads((tmp_path / "out" / "model_card.json").read_text())
    for key in ("task", "classes", "preprocessing", "training_data", "metrics", "intended_use", "limits"):
        assert key in card
    assert card["files"][0]["sha256"] and card["metrics"]["nmi"]["ci95"] == [0.4, 0.6]
    md = (tmp_path / "out" / "model_card.md").read_text()
    assert "## Intended use" in md and "95 % CI 0.4 – 0.6" in md and "letterbox" in md


def test_classifier_checkpoint_and_card_label_counts(syn_project, tmp_path):
    from mskstudio.ml.deploy.onnx_export import export_run
    from mskstudio.ml.models import build_backbone

    bb, dim = build_backbone("resnet18")
    head = torch.nn.Linear(dim, 4)
    buf = io.BytesIO()
    torch.save({"arch": "resnet18", "input_size": 64, "classes": ["long", "pair", "hand", "round"],
                "model": {**{f"backbone.{k}": v for k, v in bb.state_dict().items()},
                          **{f"head.{k}": v for k, v in head.state_dict().items()}}}, buf)
    ls = syn_project.labels.label_set("region")
    run = syn_project.models.create("classifier", "resnet18", label_set_id=ls)
    syn_project.models.set_checkpoint(run, syn_project.blobs.put_bytes(buf.getvalue()))
    res = export_run(syn_project, run, tmp_path / "c", n_parity=3)
    assert [f["role"] for f in res["files"]] == ["classifier", "embedder"]
    assert all(f["parity"]["max_abs_diff"] < 1e-4 for f in res["files"])
    card = json.loads((tmp_path / "c" / "model_card.json").read_text())
    assert card["classes"] == ["long", "pair", "hand", "round"]
    assert sum(card["training_data"]["label_counts"].values()) == 12
    assert card["training_data"]["data_hash"].startswith("sha256:")


def test_session_options_and_providers():
    from mskstudio.ml.deploy import onnx_runtime as ort_mod

    provs = ort_mod.providers()
    assert provs[-1] == "CPUExecutionProvider"
    if not torch.cuda.is_available():
        assert provs == ["CPUExecutionProvider"]
    assert 1 <= ort_mod.physical_cores() <= 512


def test_onnx_backend_embeddings_match_torch(syn_project):
    from mskstudio.ml.retrieve import embeddings as emb

    run = _deepcluster_run(syn_project, size=48)
    ids = syn_project.images.ids()[:4]
    a = emb.model_embeddings(syn_project, run, ids, backend="torch")
    b = emb.model_embeddings(syn_project, run, ids, backend="onnx")
    assert a.shape == b.shape == (4, 512)
    assert np.abs(a - b).max() < 1e-3

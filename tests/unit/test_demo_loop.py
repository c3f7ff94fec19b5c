"""The whole loop as one job on the phantom project (issue 22, item 7: `make demo` without a display
built the data and stopped — no clusters, no model, no heatmap, no similar case)."""

from __future__ import annotations

import math

import pytest


@pytest.fixture
def loop_project(phantom_project, phantom_archive):
    from mskstudio.io.exports.annotations import import_masks

    import_masks(phantom_project, phantom_archive, boxes=True)  # the phantom surgeons' masks and boxes
    return phantom_project


def test_demo_loop_runs_every_step_and_leaves_a_populated_project(loop_project, tmp_path):
    from mskstudio.jobrun import submit_and_run
    from mskstudio.ml.explain.gradcam import cam_path

    p = loop_project
    r = submit_and_run(p, "demo-loop", {"outdir": str(tmp_path / "onnx"), "explain_images": 3,
                                        "train": {"arch": "smallcnn", "size": 48, "k": 2, "epochs": 2,
                                                  "batch_size": 16, "n_boot": 50}})
    names = [s["step"] for s in r["steps"]]
    assert names == ["cluster now", "label clusters", "train classifier", "predict + Grad-CAM",
                     "similar cases", "box segmenter", "ONNX export"]
    assert all(s["seconds"] >= 0 and s["figures"] for s in r["steps"])

    # The radiologist labelled through the board's store actions: cluster labels of this run,
    # in the loop's label set only, with the set's own classes.
    label = next(s for s in r["steps"] if s["step"] == "label clusters")
    ls = p.labels.find_label_set(r["label_set"])
    rows = p.db.query("SELECT l.source, l.run_id, c.label_set_id FROM labels l JOIN classes c "
                      "ON c.id = l.class_id WHERE l.label_set_id = ?", (ls,))
    cluster_rows = [x for x in rows if x["source"] == "cluster"]
    assert len(cluster_rows) == label["labelled"] == len(p.images.ids())
    assert {x["run_id"] for x in cluster_rows} == {r["cluster_run_id"]}
    assert {x["label_set_id"] for x in rows} == {ls}
    acc = label["accuracy"]
    assert acc["n"] == label["labelled"] and acc["ci"][0] <= acc["value"] <= acc["ci"][1]
    assert p.db.scalar("SELECT COUNT(*) FROM audit WHERE action LIKE 'cluster.%'") >= label["actions"]["label"]

    # Predictions, cached heatmaps, embeddings, the box segmenter and the ONNX files exist.
    run = r["model_run_id"]
    assert len(p.models.predictions(run)) == len(p.images.ids())
    assert next(s for s in r["steps"] if s["step"] == "predict + Grad-CAM")["heatmaps"] == 3
    assert any(cam_path(p, run, i).exists() for i in p.images.ids())
    assert "precision@5" in next(s for s in r["steps"] if s["step"] == "similar cases")["figures"]
    box_run = next(s for s in r["steps"] if s["step"] == "box segmenter")["box_run_id"]
    assert p.models.get(box_run)["status"] == "done"
    assert list((tmp_path / "onnx").glob("*.onnx"))
    assert "95% CI" in next(s for s in r["steps"] if s["step"] == "train classifier")["figures"]
    assert math.isfinite(r["seconds"])

"""A run trained on a node from a copy of the project comes back as an ordinary run."""

from __future__ import annotations

import shutil

import pytest

from mskstudio.jobrun import submit_and_run

TINY = {"label_set": "region", "arch": "tinycnn", "size": 32, "k": 2, "epochs": 1, "batch_size": 8,
        "seed": 0, "device": "cpu", "n_boot": 20}


@pytest.fixture
def project_and_copy(tmp_path):
    from mskstudio.ml.synthetic import add_synthetic_images
    from mskstudio.store import Project

    path = tmp_path / "home.mskproj"
    with Project.create(path) as project:
        add_synthetic_images(project, 24, seed=2, size=32, thumbnails=False)
    node = tmp_path / "node" / "home.mskproj"
    shutil.copytree(path, node)  # what goes to the cluster node
    with Project.open(node) as copy:  # trained there (here: in-process, one rank)
        run_id = submit_and_run(copy, "train", TINY)["model_run_id"]
    return path, node, run_id


def test_a_node_run_imports_as_an_ordinary_run(project_and_copy, capsys):
    from mskstudio.cli import main
    from mskstudio.ml.models import load_checkpoint
    from mskstudio.store import Project

    path, node, run_id = project_and_copy
    with Project.open(path) as project:  # the project moved on while the node trained
        project.labels.set_label(project.images.ids()[0], project.labels.label_set("region"),
                                 project.labels.classes(project.labels.label_set("region"))[0].id)
        before = {r["id"] for r in project.models.list()}
    assert main(["import-run", str(path), str(node), str(run_id), "--json"]) == 0
    out = capsys.readouterr().out
    with Project.open(path) as project, Project.open(node) as copy:
        (new,) = [r for r in project.models.list() if r["id"] not in before]
        assert str(new["id"]) in out and new["kind"] == "classifier" and new["status"] == "done"
        theirs = copy.models.get(run_id)
        for key in ("arch", "params", "split", "data_hash", "label_set_id", "checkpoint_sha"):
            assert new[key] == theirs[key], key
        assert project.models.metrics(new["id"]) == copy.models.metrics(run_id)
        assert load_checkpoint(project, new["id"])["state"] == "done"
        assert any(r["action"] == "model_run.import" for r in project.audit_log())
        # An ordinary run: it predicts like one trained here.
        pred = submit_and_run(project, "predict", {"model_run_id": new["id"], "image_ids": project.images.ids()[:4],
                                                   "label": False, "device": "cpu"})
        assert pred and project.models.prediction_count(new["id"]) == 4


def test_a_run_from_another_project_or_unfinished_is_refused(project_and_copy, tmp_path, capsys):
    from mskstudio.cli import main
    from mskstudio.ml.synthetic import add_synthetic_images
    from mskstudio.store import Project

    path, node, run_id = project_and_copy
    other = tmp_path / "other.mskproj"
    with Project.create(other) as project:
        add_synthetic_images(project, 24, seed=9, size=32, thumbnails=False)  # other SOP UIDs
        other_run = project.models.create("classifier", "tinycnn")
    with Project.open(path) as project:
        n = len(project.models.list())
    assert main(["import-run", str(path), str(other), str(other_run)]) != 0
    assert "not finished" in capsys.readouterr().err
    with Project.open(other) as project:
        project.models.set_checkpoint(other_run, project.blobs.put_bytes(b"x"))
        project.models.set_status(other_run, "done")
    assert main(["import-run", str(path), str(other), str(other_run)]) != 0
    err = capsys.readouterr().err
    assert "import runs only from a copy of this project" in err and "Traceback" not in err
    assert main(["import-run", str(path), str(node), "999"]) != 0
    assert "no model run 999" in capsys.readouterr().err
    with Project.open(path) as project:
        assert len(project.models.list()) == n  # nothing written

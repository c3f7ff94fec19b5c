"""The classifier's background checkpoint writer: the run names a blob only once it is on
disk, the epoch's figures come only after that, and the previous checkpoint is replaced."""

from __future__ import annotations

import threading

import torch

from mskstudio.ml.classify.checkpoint_writer import CheckpointWriter, ImmediateSaver


def _state(v: float) -> dict:
    return {"model": {"w": torch.full((256, 256), v)}, "epoch": int(v)}


def test_the_epoch_is_reported_only_after_its_checkpoint_is_the_runs(new_project):
    project = new_project
    run = project.models.create("classifier", "tinycnn")
    writer = CheckpointWriter(project, run, lambda s, task, fold: {"task": task, "fold": fold, **(s or {})})
    seen = []

    def report(epoch):
        def after():
            sha = project.models.get(run)["checkpoint_sha"]
            obj = torch.load(project.blobs.path(sha), weights_only=False)
            seen.append((epoch, obj["epoch"], float(obj["model"]["w"][0, 0]), threading.current_thread().name))
        return after

    saver = writer.for_fold("main", 0)
    saver(_state(1.0), report(1))
    saver.flush()
    first = project.models.get(run)["checkpoint_sha"]
    saver(_state(2.0), report(2))  # in flight: the run still names epoch 1's blob until committed
    assert len(seen) == 1
    saver.flush()
    writer(None, "main", 1)  # between folds: synchronous
    last = project.models.get(run)["checkpoint_sha"]
    writer.close()
    main = threading.current_thread().name
    assert seen == [(1, 1, 1.0, main), (2, 2, 2.0, main)]  # figures on the job's thread, after the commit
    assert torch.load(project.blobs.path(last), weights_only=False) == {"task": "main", "fold": 1}
    assert not project.blobs.exists(first), "the replaced checkpoint is deleted"


def test_a_failed_write_fails_the_job_and_reports_nothing(new_project, monkeypatch):
    project = new_project
    run = project.models.create("classifier", "tinycnn")
    writer = CheckpointWriter(project, run, lambda s, task, fold: s)

    def disk_full(chunks, durable=True):
        raise OSError("No space left on device")

    monkeypatch.setattr(project.blobs, "put_chunks", disk_full)
    seen = []
    writer.for_fold("main", 0)(_state(1.0), lambda: seen.append(1))
    try:
        writer.close()
    except OSError as e:
        assert "No space" in str(e)
    else:
        raise AssertionError("the failed write was not raised")
    assert seen == [] and project.models.get(run)["checkpoint_sha"] is None


def test_a_plain_callable_saves_at_once_then_reports():
    order = []
    saver = ImmediateSaver(lambda s: order.append(("save", s["epoch"])))
    saver({"epoch": 3}, lambda: order.append("report"))
    saver.poll()
    saver.flush()
    assert order == [("save", 3), "report"]

"""Interrupted jobs: dead owners are detected (pid reuse included), their model runs are
marked, and a resubmitted job continues the same run (classifier and both segmenters)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from mskstudio.jobrun import run_job
from mskstudio.jobs import Cancelled, CancelToken, RecordingSink
from mskstudio.store import Project


def test_a_reused_pid_does_not_keep_a_dead_job_running(tmp_path):
    root = tmp_path / "p.mskproj"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.2)
        with Project.create(root) as project:
            old = project.jobs.submit("import", {"paths": ["/x"]})
            live = project.jobs.submit("import", {"paths": ["/y"]})
            for job in (old, live):
                project.jobs.started(job)
                project.db.execute("UPDATE jobs SET pid = ? WHERE id = ?", (sleeper.pid, job))
            # The old job started an hour before the sleeper existed: its pid was reused.
            project.db.execute("UPDATE jobs SET started_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', "
                               "'-1 hour') WHERE id = ?", (old,))
            run = project.models.create("classifier", "tinycnn", job_id=old)
            live_run = project.models.create("classifier", "tinycnn", job_id=live)
        with Project.open(root) as project:
            status = {r["id"]: r["status"] for r in project.jobs.list()}
            if sys.platform.startswith("linux"):  # start times come from /proc
                assert status[old] == "interrupted"
                assert project.models.get(run)["status"] == "interrupted"
            assert status[live] == "running"
            assert project.models.get(live_run)["status"] == "running"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_resubmit_names_the_unfinished_run_of_the_job(new_project):
    job = new_project.jobs.submit("train", {"label_set": "x"})
    run = new_project.models.create("classifier", "tinycnn", job_id=job)
    new_project.jobs.finish(job, "interrupted")
    params = new_project.jobs.params(new_project.jobs.resubmit(job))
    assert params["resume_of"] == job and params["resume"] == run and params["label_set"] == "x"
    new_project.models.set_status(run, "done")
    assert "resume" not in new_project.jobs.params(new_project.jobs.resubmit(job))


def test_orphan_blobs_are_collected_after_a_crash(tmp_path):
    root = tmp_path / "p.mskproj"
    with Project.create(root) as project:
        kept = project.blobs.put_bytes(b"named")
        project.models.set_checkpoint(project.models.create("classifier", "tinycnn"), kept)
        orphan = project.blobs.put_bytes(b"nobody names me")
        half = project.blobs.path(orphan).parent / ".incoming-abc"
        half.write_bytes(b"half")
        job = project.jobs.submit("import", {})
        project.jobs.started(job)
        project.db.execute("UPDATE jobs SET pid = 2147480000 WHERE id = ?", (job,))
    with Project.open(root) as project:
        assert project.blobs.exists(kept) and not project.blobs.exists(orphan) and not half.exists()


class _CancelAt(RecordingSink):
    def __init__(self, token, metric, step):
        super().__init__()
        self.token, self.name, self.step = token, metric, step

    def on_metric(self, name, value, step):
        super().on_metric(name, value, step)
        if name == self.name and step == self.step:
            self.token.cancel()


def _interrupt_then_resume(project, kind, params, metric, stop_after, epochs):
    """Run until ``metric`` of epoch ``stop_after``, cancel, mark it interrupted as a crash
    would, resume through ``jobs.resubmit``; returns (run id, steps of ``metric`` seen)."""
    token = CancelToken()
    job = project.jobs.submit(kind, params)
    with pytest.raises(Cancelled):
        run_job(project, job, sink=_CancelAt(token, metric, stop_after), token=token)
    project.db.execute("UPDATE jobs SET status = 'running' WHERE id = ?", (job,))
    project.db.execute("UPDATE model_runs SET status = 'running' WHERE job_id = ?", (job,))
    project.jobs.interrupt([job])
    run = project.models.for_job(job)
    assert run["status"] == "interrupted"
    again = project.jobs.resubmit(job)
    result = run_job(project, again, sink=RecordingSink())
    steps = sorted(s for j in (job, again) for s, _ in project.jobs.metrics(j).get(metric, []))
    assert steps == list(range(epochs))  # each epoch once, none repeated, none skipped
    done = project.models.get(run["id"])
    assert done["status"] == "done" and done["job_id"] == again
    assert project.models.list(done["kind"])[0]["id"] == run["id"]  # no second run
    return result


def test_segmenter_resumes_the_same_run_at_the_next_epoch(new_project):
    import torch
    from test_segment import _synthetic_project

    from mskstudio.ml.segment.train import load_segmenter

    torch.set_num_threads(1)
    _synthetic_project(new_project, n_patients=6)
    params = {"arch": "unet-small", "size": 32, "epochs": 3, "batch_size": 8, "seed": 0}
    result = _interrupt_then_resume(new_project, "train-seg", params, "val_dice", 0, 3)
    model, ckpt = load_segmenter(new_project, result["run_id"])
    assert ckpt["input_size"] == 32 and "state" not in ckpt


def test_box_segmenter_resumes_the_same_run_at_the_next_epoch(new_project):
    import torch
    from test_segment import _ellipse_project

    from mskstudio.ml.segment import roi_seg as sr

    torch.set_num_threads(1)
    _ellipse_project(new_project)
    params = {"arch": "unet-small", "crop": 32, "epochs": 3, "samples_per_image": 2, "seed": 0}
    result = _interrupt_then_resume(new_project, "train-seg-box", params, "val_iou", 1, 3)
    model, ckpt = sr.load_box_segmenter(new_project, result["run_id"])
    assert ckpt["crop"] == 32


def test_a_run_whose_images_changed_says_why_it_cannot_resume(new_project):
    import torch
    from test_segment import _synthetic_project

    torch.set_num_threads(1)
    _synthetic_project(new_project, n_patients=4)
    token = CancelToken()
    job = new_project.jobs.submit("train-seg", {"arch": "unet-small", "size": 32, "epochs": 3})
    with pytest.raises(Cancelled):
        run_job(new_project, job, sink=_CancelAt(token, "val_dice", 0), token=token)
    new_project.db.execute("DELETE FROM masks WHERE image_id = (SELECT MIN(image_id) FROM masks)")
    with pytest.raises(ValueError, match="images changed.*train a new run"):
        run_job(new_project, new_project.jobs.resubmit(job))
    assert json.loads(new_project.jobs.get(job)["params"])["epochs"] == 3

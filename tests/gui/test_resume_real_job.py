"""kill -9 of a real job subprocess started by the app, then the app's own Resume: the
predictions the killed job stored are kept, the resumed job predicts only the rest, and
the project ends as after an uninterrupted run (issue 23, item 1, the GUI path)."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

pytestmark = pytest.mark.gui
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(phantom_project_path, tmp_path_factory):
    from trained_project import build_trained_project

    return build_trained_project(phantom_project_path, tmp_path_factory.mktemp("resume-gui"))


def test_a_killed_predict_resumed_from_the_app_continues_where_it_stopped(qtbot, trained, tmp_path,
                                                                         monkeypatch):
    from trained_project import close_window, open_window

    from mskstudio.jobrun import submit_and_run
    from mskstudio.store import Project

    monkeypatch.setenv("PYTHONPATH", str(REPO))  # the job host imports this checkout
    root, run_id = trained
    w = open_window(qtbot, root, tmp_path)
    p = w.project
    n = len(p.images.ids())
    params = {"model_run_id": run_id, "batch_size": 1}  # chunks of 6 images: many kill points
    job = w.runner.submit("predict", params)

    def stored() -> int:
        return p.models.prediction_count(run_id)

    killed = []

    def kill_once_some_are_stored(job_id, *_):
        if job_id == job and not killed and stored() > 0:
            killed.append(stored())
            os.kill(w.runner.handle(job).process.processId(), signal.SIGKILL)

    w.runner.job_progress.connect(kill_once_some_are_stored)
    qtbot.waitUntil(lambda: p.jobs.get(job)["status"] in ("interrupted", "done", "error"), timeout=120000)
    assert p.jobs.get(job)["status"] == "interrupted" and killed
    kept = stored()
    assert 0 < kept < n, "the kill landed after the first stored chunk, before the last"
    assert job in w.jobs_view.interrupted_ids and not w.jobs_view.banner.isHidden()
    assert "cannot continue" not in w.jobs_view.banner_text.text()

    logs: list[str] = []
    w.runner.job_log.connect(lambda _j, m: logs.append(m))
    [resumed] = w.jobs_view.resume_interrupted()
    qtbot.waitUntil(lambda: p.jobs.get(resumed)["status"] in ("done", "error", "interrupted"), timeout=120000)
    assert p.jobs.get(resumed)["status"] == "done", p.jobs.get(resumed)["error"]
    assert any(m.startswith(f"resuming: {kept} of {n} images were predicted") for m in logs), logs
    assert stored() == n
    assert not p.db.scalar("SELECT COUNT(*) FROM jobs WHERE status = 'running'")
    resumed_result = w.project.jobs.record(resumed).result
    after = p.db.query("SELECT image_id, class_id, probs FROM predictions WHERE model_run_id = ? "
                       "ORDER BY image_id", (run_id,))
    close_window(w)

    # The same job uninterrupted on a fresh copy of the project: the same predictions and summary.
    shutil.copytree(root, tmp_path / "ref.mskproj")
    with Project.open(tmp_path / "ref.mskproj") as ref:
        result = submit_and_run(ref, "predict", params)
        assert [tuple(r) for r in ref.db.query(
            "SELECT image_id, class_id, probs FROM predictions WHERE model_run_id = ? ORDER BY image_id",
            (run_id,))] == [tuple(r) for r in after]
    assert resumed_result == result

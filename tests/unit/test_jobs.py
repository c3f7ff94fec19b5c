"""JobContext: nested progress ranges, ETA, cancel; jobrun records the life of a job."""

from __future__ import annotations

import pytest

from mskstudio import jobrun
from mskstudio.jobs import Cancelled, CancelToken, EtaEstimator, JobContext, RecordingSink


def test_sub_ranges_map_onto_parent():
    sink = RecordingSink()
    ctx = JobContext(sink)
    first, second = ctx.sub(0.0, 0.25), ctx.sub(0.25, 1.0)
    first.progress(0.5, "half of first")
    nested = second.sub(0.5, 1.0)
    nested.progress(0.5)
    fractions = [round(f, 4) for f, _, _ in sink.progress]
    assert fractions == [0.125, round(0.25 + 0.75 * 0.75, 4)]
    assert sink.progress[-1][1] == "half of first"  # the last message sticks until replaced


def test_progress_never_goes_backwards_and_is_clamped():
    sink = RecordingSink()
    ctx = JobContext(sink)
    ctx.progress(0.6)
    ctx.sub(0.0, 0.5).progress(1.0)  # 0.5 < 0.6: the bar stays
    ctx.progress(7.0)
    assert [f for f, _, _ in sink.progress] == [0.6, 0.6, 1.0]


def test_bad_sub_range():
    with pytest.raises(ValueError):
        JobContext().sub(0.5, 0.2)


def test_eta_from_average_rate():
    now = [0.0]
    eta = EtaEstimator(clock=lambda: now[0])
    assert eta.update(0.0) is None
    now[0] = 10.0
    assert eta.update(0.25) == pytest.approx(30.0)


def test_cancel_is_seen_by_sub_contexts():
    token = CancelToken()
    ctx = JobContext(token=token)
    child = ctx.sub(0.2, 0.8)
    child.check_cancelled()
    token.cancel()
    with pytest.raises(Cancelled):
        child.check_cancelled()


def test_steps_reports_and_checks():
    sink = RecordingSink()
    token = CancelToken()
    ctx = JobContext(sink, token)
    seen = []
    with pytest.raises(Cancelled):
        for item in ctx.steps(list(range(10)), "item {i}/{n}"):
            seen.append(item)
            if item == 3:
                token.cancel()
    assert seen == [0, 1, 2, 3]
    assert sink.progress[-1][1] == "item 4/10"


def _ok(project, params, ctx):
    for step in range(3):
        ctx.metric("loss", 1.0 / (step + 1), step)
        ctx.progress((step + 1) / 3, f"step {step}")
    return {"answer": params["x"] * 2}


def _boom(project, params, ctx):
    raise RuntimeError("the decoder exploded")


def _cancels(project, params, ctx):
    ctx.token.cancel()
    ctx.check_cancelled()


@pytest.fixture
def kinds(monkeypatch):
    monkeypatch.setitem(jobrun.JOB_KINDS, "t-ok", f"{__name__}:_ok")
    monkeypatch.setitem(jobrun.JOB_KINDS, "t-boom", f"{__name__}:_boom")
    monkeypatch.setitem(jobrun.JOB_KINDS, "t-cancel", f"{__name__}:_cancels")


def test_job_rows_record_outcomes(new_project, kinds):
    result = jobrun.submit_and_run(new_project, "t-ok", {"x": 21})
    assert result == {"answer": 42}
    row = new_project.jobs.list()[0]
    assert (row["status"], row["progress"]) == ("done", 1.0)
    assert row["message"] == "step 2"  # the last message, though progress writes are throttled
    assert new_project.jobs.metrics(row["id"])["loss"] == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
    with pytest.raises(RuntimeError):
        jobrun.submit_and_run(new_project, "t-boom", {})
    row = new_project.jobs.list()[0]
    assert row["status"] == "error" and "the decoder exploded" in row["error"]
    with pytest.raises(Cancelled):
        jobrun.submit_and_run(new_project, "t-cancel", {})
    assert new_project.jobs.list()[0]["status"] == "cancelled"


def test_unknown_kind_is_a_user_error(new_project):
    with pytest.raises(jobrun.UserError, match="unknown job kind"):
        jobrun.submit_and_run(new_project, "no-such-kind", {})


def test_every_registered_kind_resolves():
    for kind in jobrun.JOB_KINDS:
        assert callable(jobrun.job_function(kind)), kind


def test_an_undefined_metric_is_skipped_not_fatal(tmp_path):
    """A nan figure (the loss of an empty validation part) must not end the job."""
    from mskstudio.store import Project

    with Project.create(tmp_path / "m.mskproj") as project:
        job = project.jobs.submit("import", {})
        project.jobs.metric(job, "fold0/val_loss", float("nan"), 0)
        project.jobs.metric(job, "fold0/val_loss", 0.5, 1)
        assert project.jobs.metrics(job) == {"fold0/val_loss": [(1, 0.5)]}

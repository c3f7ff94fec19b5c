"""Resume marks (what a killed per-image job had finished), the chain of resumed jobs,
the kept feature rows of "cluster now", and which kinds continue or restart."""

from __future__ import annotations

import numpy as np
import pytest

from mskstudio import jobrun
from mskstudio.io.resume_marks import ResumeMarks, chunk_size
from mskstudio.jobs import Cancelled, CancelToken, JobContext


def test_resume_root_follows_the_chain_of_resumes(new_project):
    first = new_project.jobs.submit("predict", {"model_run_id": 1})
    new_project.jobs.finish(first, "interrupted")
    second = new_project.jobs.resubmit(first)
    new_project.jobs.finish(second, "interrupted")
    third = new_project.jobs.resubmit(second)
    assert [new_project.jobs.resume_root(j) for j in (first, second, third)] == [first, first, first]


def test_marks_are_kept_for_a_resume_of_the_same_work_only(new_project):
    p = new_project
    first = p.jobs.submit("predict", {})
    marks = ResumeMarks.for_job(p, first, {}, signature={"ids": [1, 2, 3]})
    assert not marks.resumed
    marks.add({0: {"n": 2}})
    p.jobs.finish(first, "interrupted")
    second = p.jobs.resubmit(first)
    params = p.jobs.params(second)
    again = ResumeMarks.for_job(p, second, params, signature={"ids": [1, 2, 3]})
    assert again.resumed and 0 in again and again.get(0) == {"n": 2} and 2 not in again
    other = ResumeMarks.for_job(p, second, params, signature={"ids": [1, 2]})  # other images
    assert not other.resumed and 0 not in other
    again.finish()
    assert not ResumeMarks.for_job(p, second, params, signature={"ids": [1, 2, 3]}).resumed
    # a new job (no resume_of) never picks up old marks, and marks without a job stay in memory
    assert not ResumeMarks.for_job(p, p.jobs.submit("predict", {}), {}, signature=None).resumed
    loose = ResumeMarks.for_job(p, None, {})
    loose.add({1: 1})
    assert 1 in loose and not list((p.cache_dir / "resume").glob("job*.json"))


def test_chunk_size_is_about_a_tenth_within_bounds():
    assert chunk_size(60, lo=4, hi=256) == 6
    assert chunk_size(10, lo=16, hi=256) == 16
    assert chunk_size(100_000, lo=16, hi=8192) == 8192


class _CancelAfter:
    """A sink that cancels its token after ``n`` progress reports (a kill between batches)."""

    def __init__(self, token: CancelToken, n: int):
        self.token, self.n, self.logs = token, n, []

    def on_progress(self, fraction, message, eta_s):
        self.n -= 1
        if self.n <= 0:
            self.token.cancel()

    def on_metric(self, name, value, step):
        pass

    def on_log(self, message):
        self.logs.append(message)


def test_feature_rows_kept_by_a_stopped_pass_give_the_uninterrupted_result(new_project, tmp_path):
    import torch

    from mskstudio.ml.cluster.features import extract_features
    from mskstudio.ml.synthetic import add_synthetic_images

    add_synthetic_images(new_project, 40, seed=3, size=32, thumbnails=False)
    ids = new_project.images.ids()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    whole = extract_features(new_project, net, ids, size=32, batch_size=2)
    partial = tmp_path / "rows.npz"
    token = CancelToken()
    with pytest.raises(Cancelled):
        extract_features(new_project, net, ids, JobContext(_CancelAfter(token, 11), token), size=32,
                         batch_size=2, partial=partial)
    assert partial.exists()
    with np.load(partial) as z:
        assert 0 < len(z["rows"]) < len(ids) and len(z["rows"]) % 2 == 0
    sink = _CancelAfter(CancelToken(), 10**9)
    resumed = extract_features(new_project, net, ids, JobContext(sink), size=32, batch_size=2,
                               partial=partial)
    assert any(m.startswith("resuming: the features of") for m in sink.logs)
    np.testing.assert_array_equal(resumed, whole)
    assert not partial.exists()
    # rows kept with another batch size are not trusted
    with pytest.raises(Cancelled):
        token = CancelToken()
        extract_features(new_project, net, ids, JobContext(_CancelAfter(token, 11), token), size=32,
                         batch_size=2, partial=partial)
    np.testing.assert_allclose(extract_features(new_project, net, ids, size=32, batch_size=4,
                                                partial=partial), whole, rtol=1e-5, atol=1e-6)
    assert not partial.exists()


def test_every_kind_says_whether_it_continues_or_why_it_restarts():
    assert jobrun.CONTINUES.issubset(jobrun.JOB_KINDS)
    assert set(jobrun.RESTART_REASONS) <= set(jobrun.JOB_KINDS) - jobrun.CONTINUES
    for kind in jobrun.JOB_KINDS:
        continues, line = jobrun.resume_plan(kind)
        assert continues == (kind in jobrun.CONTINUES)
        assert line.startswith(kind) and ("starts again from the beginning" in line) != continues
    assert "parity" in jobrun.resume_plan("export-det")[1]

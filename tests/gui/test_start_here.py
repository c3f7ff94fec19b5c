"""The "Start here" workspace (issue 22, item 7): the loop's steps with their status and a button."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui
HERE = Path(__file__).resolve().parent


@pytest.fixture
def full_window(qtbot, qapp, project_copy):
    from mskstudio.gui.app import make_app
    from mskstudio.gui.main_window import MainWindow
    from mskstudio.store import Project

    with Project.open(project_copy) as p:
        p.set_meta("demo", "phantoms")  # as `mskstudio demo` marks its project
    make_app()
    w = MainWindow(project_copy)
    w.runner.subprocess_prefix = [sys.executable, str(HERE / "jobhost.py")]
    w.confirm = lambda *a: True
    qtbot.addWidget(w)
    w.resize(1400, 900)
    w.show()
    yield w
    w.runner.shutdown(5)
    w.viewer.loader.wait(5000)
    for d in list(w.dialogs):
        with contextlib.suppress(RuntimeError):
            d.close()


def test_start_here_shows_each_steps_status_and_takes_the_user_there(full_window, qtbot, monkeypatch):
    from mskstudio.gui.start.panel import StartHere
    from mskstudio.ml.cluster import features as F

    w = full_window
    start = w.workspace.currentWidget()
    assert isinstance(start, StartHere), "a demo project opens on Start here"
    p = w.project
    assert f"{p.images.count()} images wait" in start.status["cluster"].text()
    masks, boxes = (p.db.scalar(f"SELECT COUNT(*) FROM {t}") for t in ("masks", "boxes"))
    assert start.status["annotate"].text().startswith(f"{masks} lesion mask(s), {boxes} box(es)")
    assert start.loop_btn.isVisibleTo(start)

    ids = p.images.ids()
    rng = np.random.default_rng(0)
    assign = np.arange(len(ids)) % 4
    p.clusters.create_run(image_ids=ids, assign=assign, distance=rng.random(len(ids)),
                          member_xy=rng.normal(size=(len(ids), 2)),
                          features=F.l2_normalise(rng.normal(size=(len(ids), 8)).astype(np.float32)), k=4)
    w.notify_changed({"runs"})
    qtbot.waitUntil(lambda: "1 cluster run(s)" in start.status["cluster"].text(), timeout=5000)
    assert start.status["label"].text() == f"0/4 clusters reviewed, 0/{len(ids)} images labelled."

    start.buttons["label"].click()
    assert w.workspace.tabText(w.workspace.currentIndex()) == "Clusters"
    w.workspace.setCurrentWidget(start)
    start.buttons["review"].click()
    assert w.workspace.tabText(w.workspace.currentIndex()) == "Review"
    w.workspace.setCurrentWidget(start)
    start.buttons["annotate"].click()
    assert w.workspace.currentWidget() is w.viewer
    assert w.docks["Annotate"].view().controller.tool == "box"
    submitted = []
    monkeypatch.setattr(w.runner, "submit", lambda kind, params=None, **kw: submitted.append(kind) or 1)
    start.loop_btn.click()
    assert submitted == ["demo-loop"]

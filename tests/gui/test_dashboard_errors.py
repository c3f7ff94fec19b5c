"""Dashboard › Errors tab (pytest-qt, offscreen) on a tiny trained run: the galleries list exactly
the cases ml.evaluate.errors selects, draw a cached Grad-CAM, open a case on click, and compare
with a reader study."""

from __future__ import annotations

import numpy as np
import pytest

from mskstudio.ml.evaluate import errors

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def trained(phantom_project_path, tmp_path_factory):
    from trained_project import build_trained_project

    return build_trained_project(phantom_project_path, tmp_path_factory.mktemp("errs"))


@pytest.fixture
def dash(qtbot, trained, tmp_path):
    from trained_project import close_window, open_window

    from mskstudio.gui.dashboard.dashboard import Dashboard

    w = open_window(qtbot, trained[0], tmp_path)
    d = Dashboard(w)
    w.add_workspace("Dashboard", d)
    w.workspace.setCurrentWidget(d)
    d.tabs.setCurrentWidget(d.errors)
    yield d
    close_window(w)


def _pick(view, kind, positive=None):
    view.kind.setCurrentIndex(view.kind.findData(kind))
    if positive is not None:
        view.positive.setCurrentIndex(view.positive.findText(positive))


def test_galleries_match_the_selection_and_a_click_opens_the_viewer(dash, trained):
    view, run_id = dash.errors, trained[1]
    hold = dash.project.models.metrics(run_id)["holdout"]
    classes = hold["classes"]
    pred = np.asarray(hold["probs"]).argmax(1)
    y = np.asarray(hold["y_true"])
    _pick(view, "wrong")
    assert view.shown_ids() == [c.image_id for c in errors.wrong_cases(hold, classes, errors_limit())]
    assert len(view.shown_ids()) == min(int((pred != y).sum()), errors_limit())
    assert view.gallery.count() == len(view.shown_ids()) > 0
    # one-vs-rest false positives / negatives of the class with the most errors
    c = int(np.bincount(pred[pred != y], minlength=len(classes)).argmax())
    _pick(view, "fp", classes[c])
    fp = [i for i, t, p in zip(hold["image_ids"], y, pred, strict=True) if p == c and t != c]
    assert sorted(view.shown_ids()) == sorted(fp)[:errors_limit()] or len(fp) > errors_limit()
    assert view.positive.isVisible() and not view.study.isVisible()
    _pick(view, "fn", classes[c])
    fn = [i for i, t, p in zip(hold["image_ids"], y, pred, strict=True) if t == c and p != c]
    assert sorted(view.shown_ids()) == sorted(fn)
    _pick(view, "wrong")
    item = view.gallery.item(0)
    assert f"#{view.shown_ids()[0]}" in item.text() and "→" in item.text()
    view.gallery.itemClicked.emit(item)
    assert dash.window_.image_id == view.shown_ids()[0]
    assert dash.window_.workspace.currentWidget() is dash.window_.viewer


def errors_limit():
    from mskstudio.gui.dashboard.errors_view import LIMIT

    return LIMIT


def test_a_cached_gradcam_is_drawn_over_the_thumbnail(dash, trained, qtbot):
    from mskstudio.ml.explain.gradcam import cam_path

    view = dash.errors
    _pick(view, "wrong")
    image_id = view.shown_ids()[0]
    view.finish_icons()
    plain = view.gallery.item(0).icon().pixmap(128).toImage()
    assert not plain.isNull()
    path = cam_path(dash.project, trained[1], image_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.ones((32, 32), np.float32))
    view.refresh()
    view.finish_icons()
    heated = view.gallery.item(0).icon().pixmap(128).toImage()
    assert heated != plain
    view.heat.setChecked(False)
    qtbot.waitUntil(lambda: not view.pending_icons)  # drawn by the event loop on its own
    assert view.gallery.item(0).icon().pixmap(128).toImage() == plain


def test_model_right_most_readers_wrong(dash, trained):
    p, view = dash.project, dash.errors
    hold = p.models.metrics(trained[1])["holdout"]
    classes = hold["classes"]
    pred = np.asarray(hold["probs"]).argmax(1)
    right = [i for i, t, q in zip(hold["image_ids"], hold["y_true"], pred, strict=True) if t == q][:3]
    assert right
    ls = p.labels.label_set("region")
    truth = p.labels.label_set("truth:region")
    ids = {n: p.labels.class_id(ls, n) for n in classes}
    readers = [p.readers.ensure(n) for n in ("r1", "r2")]
    study = p.readers.create_study(
        "errs", label_set_id=ls, truth_label_set_id=truth, class_ids=list(ids.values()), image_ids=right,
        reader_ids=readers, arms=[("image", None)], orders={(0, r): right for r in readers}, seed=0)
    arm = p.readers.arms(study)[0]["id"]
    truth_of = dict(zip(hold["image_ids"], hold["y_true"], strict=True))
    for r in readers:  # both readers wrong on the first case, right on the others
        for row in p.readers.order(arm, r):
            t = classes[truth_of[int(row["image_id"])]]
            answer = next(n for n in classes if n != t) if int(row["image_id"]) == right[0] else t
            p.readers.record_read(int(row["id"]), ids[answer], seconds=1.0)
    dash.refresh()
    _pick(view, "readers")
    assert view.study.isVisible() and view.study.currentData() == study
    assert view.shown_ids() == [right[0]]
    assert "2 of 2 readers wrong" in view.gallery.item(0).text()

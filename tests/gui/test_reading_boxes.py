"""Lesion boxes in the reading window: drawn, edited, committed with the read, and blind to
every box but the reader's own on the case being read."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_reader_study import region_set  # noqa: E402

from mskstudio.ml.readers.session import ReadingSession  # noqa: E402
from mskstudio.ml.readers.setup import create_study  # noqa: E402
from mskstudio.store import Project  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture
def box_study(project_copy):
    with Project.open(project_copy) as p:
        names = region_set(p)
        sid = create_study(p, {"name": "boxes", "label_set": "region", "truth_set": "truth:region",
                               "classes": ",".join(names), "images": "sample:2-per-class",
                               "readers": "ann,bob", "arms": "image", "seed": 3, "boxes": True})
        yield p, sid
        p.close()


def _drag(window, a, b) -> None:
    window.draw_box("press", a)
    window.draw_box("move", b)
    window.draw_box("release", b)


def test_reader_draws_boxes_that_are_stored_with_the_read(qtbot, box_study):
    from mskstudio.gui.readers.window import open_reading_window
    from mskstudio.gui.viewer.boxes import BoxItem

    p, sid = box_study
    lesion = p.annotations.class_id("lesion")
    for image_id in p.readers.case_images(sid):  # the project's box on every case
        p.annotations.add_box(image_id, lesion, (2, 2, 20, 20), annotator="ann")
    ann = ReadingSession(p, sid, "ann")  # another reader's boxes on every case
    while not ann.done:
        ann.answer(1, seconds=1.0, boxes=[(5, 5, 40, 40)])
    project_boxes = p.db.scalar("SELECT COUNT(*) FROM boxes")

    w = open_reading_window(p, sid, "bob")
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.viewer.rad is not None, timeout=20000)
    assert w.box_tool.isVisible()
    assert w.viewer.stored_boxes() == []  # neither the project's nor ann's box is drawn
    first = w.case
    w.box_tool.setChecked(True)
    _drag(w, (30, 30), (10, 12))     # dragged up-left: stored as x0 < x1, y0 < y1
    _drag(w, (50, 50), (51, 51))     # a slip of the mouse: too small, no box
    _drag(w, (60, 60), (90, 80))
    drawn = w.viewer.stored_boxes()
    assert len(drawn) == 2 and all(isinstance(b, BoxItem) for b in drawn)
    assert sorted(b.rect_xyxy() for b in drawn) == [(10.0, 12.0, 30.0, 30.0), (60.0, 60.0, 90.0, 80.0)]
    assert "2 lesion boxes" in w.box_count.text()
    # a box drawn on the canvas can be deleted as in the main viewer
    w.box_tool.setChecked(False)
    w.viewer.select_box(next(b for b in drawn if b.rect_xyxy()[0] == 60.0))
    assert w.viewer.delete_selected_box()
    assert [b.rect_xyxy() for b in w.viewer.stored_boxes()] == [(10.0, 12.0, 30.0, 30.0)]
    assert "1 lesion box" in w.box_count.text()
    w.choose(2)
    w.next_case()
    # the next case starts without a box; the read has its box and the project's boxes are untouched
    qtbot.waitUntil(lambda: w.viewer.rad is not None and w.case.image_id != first.image_id, timeout=20000)
    assert w.viewer.stored_boxes() == [] and "No lesion box" in w.box_count.text()
    assert p.db.scalar("SELECT COUNT(*) FROM boxes") == project_boxes
    w.choose(1)
    w.next_case()
    w.close()
    root = p.root
    p.close()
    with Project.open(root) as again:
        reads = {r["image_id"]: int(r["id"]) for r in again.readers.reads(sid) if r["reader"] == "bob"}
        assert len(reads) == 2
        stored = again.readers.read_boxes(sid)
        assert stored[reads[first.image_id]] == [(10.0, 12.0, 30.0, 30.0)]
        second = next(i for i in reads if i != first.image_id)
        assert reads[second] not in stored
        # the reopened session goes on at the third case, again with no box shown
        w2 = open_reading_window(again, sid, "bob")
        qtbot.addWidget(w2)
        w2.show()
        qtbot.waitUntil(lambda: w2.viewer.rad is not None, timeout=20000)
        assert w2.case.index == 2 and w2.viewer.stored_boxes() == []
        w2.close()


def test_study_without_boxes_has_no_box_tool(qtbot, box_study):
    from mskstudio.gui.readers.window import open_reading_window

    p, _ = box_study
    names = region_set(p)
    sid = create_study(p, {"name": "plain", "label_set": "region", "truth_set": "truth:region",
                           "classes": ",".join(names), "images": "sample:1-per-class", "readers": "bob",
                           "arms": "image", "seed": 3})
    w = open_reading_window(p, sid, "bob")
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.viewer.rad is not None, timeout=20000)
    assert not w.box_tool.isVisible()
    w.draw_box("press", (1, 1))
    w.draw_box("release", (30, 30))
    assert w.viewer.stored_boxes() == []

"""Annotate controller driven headless: brush/eraser/polygon/lasso/fill/box, undo saves the store."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("PySide6")


@pytest.fixture
def setup(qtbot, new_project):
    import pyqtgraph as pg

    from mskstudio.gui.annotate.panel import AnnotateController

    pid = new_project.images.patient_id("P")
    sid = new_project.images.study_id(pid, "S")
    image_id = new_project.images.add_image(
        {
            "study_id": sid,
            "sop_uid": "1.2",
            "rows": 300,
            "cols": 400,
            "spacing_row_mm": 0.2,
            "spacing_col_mm": 0.2,
        },
        None,
    )
    view = pg.GraphicsView()
    vb = pg.ViewBox(invertY=True, lockAspect=True)
    view.setCentralItem(vb)
    canvas = pg.ItemGroup()
    vb.addItem(canvas)
    qtbot.addWidget(view)
    ctl = AnnotateController()
    ctl.attach_canvas(canvas, new_project)
    ctl.set_image(image_id)
    ctl._keep = (view, vb, canvas)  # the test owns the view
    return ctl, new_project, image_id


def _saved(project, image_id, class_id, ctl=None):
    if ctl is not None:
        assert ctl.flush()  # strokes are written by the background saver
    mid = project.annotations.find_mask(image_id, class_id, source="human")
    return project.annotations.load_mask(mid) if mid else np.zeros((300, 400), bool)


def test_brush_eraser_undo_redo(setup):
    ctl, project, image_id = setup
    ctl.set_tool("brush")
    ctl.set_radius(10)
    ctl.handle("press", (100, 100))
    ctl.handle("move", (150, 100))
    ctl.handle("release", (150, 100))
    saved = _saved(project, image_id, ctl.class_id, ctl)
    assert saved[100, 100:151].all() and saved.sum() > 50 * 15
    assert np.array_equal(saved, ctl.mask)
    # Overlay pixels follow the mask (premultiplied RGBA, alpha > 0 inside only).
    buf = ctl.painter.item.buffer
    assert buf[100, 120, 3] > 0 and buf[10, 10, 3] == 0
    img = ctl.painter.item.qimage
    assert img.pixelColor(120, 100).alpha() > 0  # the QImage wraps the buffer, no copy
    ctl.set_tool("eraser")
    ctl.handle("press", (125, 100))
    ctl.handle("release", (125, 100))
    assert not _saved(project, image_id, ctl.class_id, ctl)[100, 125]
    ctl.undo()
    assert _saved(project, image_id, ctl.class_id, ctl)[100, 125] and buf[100, 125, 3] > 0
    ctl.undo()
    assert not _saved(project, image_id, ctl.class_id, ctl).any() and buf[..., 3].max() == 0
    ctl.redo()
    assert _saved(project, image_id, ctl.class_id, ctl)[100, 125]
    assert ctl.stack.count() == 2


def test_polygon_lasso_fill_box(setup):
    ctl, project, image_id = setup
    ctl.set_tool("polygon")
    for p in [(10, 10), (60, 10), (60, 60), (10, 60)]:
        ctl.handle("press", p)
    ctl.handle("press", (11, 11))  # click near the first vertex closes it
    assert _saved(project, image_id, ctl.class_id, ctl)[10:61, 10:61].all()
    ctl.set_tool("lasso")
    ctl.handle("press", (200, 200))
    for p in [(260, 200), (260, 260), (200, 260)]:
        ctl.handle("move", p)
    ctl.handle("release", (200, 255))
    assert _saved(project, image_id, ctl.class_id, ctl)[230, 230]
    # Draw an outline with the brush and fill it.
    ctl.set_tool("brush")
    ctl.set_radius(2)
    pts = [(300 + 30 * np.cos(t), 100 + 30 * np.sin(t)) for t in np.linspace(0, 2 * np.pi, 60)]
    ctl.handle("press", pts[0])
    for p in pts[1:]:
        ctl.handle("move", p)
    ctl.handle("release", pts[-1])
    assert not ctl.mask[100, 300]
    ctl.set_tool("fill")
    ctl.handle("press", (300, 100))
    saved = _saved(project, image_id, ctl.class_id, ctl)
    assert saved[100, 300] and not saved[100, 380] and not saved[5, 5]
    n = ctl.stack.count()
    ctl.undo()
    assert not _saved(project, image_id, ctl.class_id, ctl)[100, 300]
    ctl.redo()
    ctl.set_tool("box")
    ctl.handle("press", (20, 150))
    ctl.handle("release", (80, 190))
    boxes = project.annotations.boxes_of(image_id)
    assert len(boxes) == 1 and (boxes[0].x0, boxes[0].y1) == (20, 190)
    ctl.undo()
    assert not project.annotations.boxes_of(image_id)
    ctl.flush()
    assert ctl.stack.count() == n + 1
    row = project.annotations.masks_of(image_id)[0]
    assert row.area_mm2 == pytest.approx(row.area_px * 0.04)


def test_attach_to_real_viewer_mouse_goes_to_brush(qtbot, new_project):
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtTest import QTest

    from mskstudio.gui.annotate.panel import AnnotateController, AnnotatePanel
    from mskstudio.gui.viewer.viewer import Viewer

    pid = new_project.images.patient_id("P")
    sid = new_project.images.study_id(pid, "S")
    image_id = new_project.images.add_image(
        {"study_id": sid, "sop_uid": "1.3", "rows": 200, "cols": 200}, None
    )
    viewer = Viewer()
    qtbot.addWidget(viewer)
    viewer.resize(400, 400)
    viewer.show()
    viewer.set_project(new_project)
    ctl = AnnotateController()
    ctl.attach(viewer)
    panel = AnnotatePanel(ctl)
    qtbot.addWidget(panel)
    viewer.image_loaded.emit(image_id)  # what the viewer emits once the pixels are shown
    panel.refresh_classes()
    viewer.vb.setRange(xRange=(0, 200), yRange=(0, 200), padding=0)
    qtbot.wait(50)
    panel.buttons["brush"].setChecked(True)
    assert ctl.tool == "brush"
    ctl.set_radius(8)
    scene = viewer.canvas.mapToScene(QPointF(100, 100))
    vp = viewer.view.mapFromScene(scene)
    QTest.mousePress(viewer.view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, vp)
    QTest.mouseRelease(
        viewer.view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, vp + QPoint(0, 0)
    )
    assert ctl.flush()
    mid = new_project.annotations.find_mask(image_id, ctl.class_id, source="human")
    assert mid is not None
    assert new_project.annotations.load_mask(mid)[98:103, 98:103].all()


def test_saves_run_on_one_writer_thread_and_undo_survives_switching_images(setup, monkeypatch):
    import threading

    from mskstudio.store.repo_annotations import AnnotationRepo

    ctl, project, image_a = setup
    sid = project.images.study_id(project.images.patient_id("P"), "S")
    image_b = project.images.add_image({"study_id": sid, "sop_uid": "1.9", "rows": 300, "cols": 400}, None)
    writers: set[int] = set()
    original = AnnotationRepo.save_mask

    def recording_save(self, *args, **kwargs):
        writers.add(threading.get_ident())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AnnotationRepo, "save_mask", recording_save)
    ctl.set_tool("brush")
    ctl.set_radius(5)
    for x in range(20, 220, 20):  # ten strokes, faster than the writer: they may coalesce
        ctl.handle("press", (x, 50))
        ctl.handle("release", (x, 50))
    expected_a = ctl.mask.copy()
    ctl.set_image(image_b)  # switching flushes: image A's strokes are all in the store
    assert writers and threading.get_ident() not in writers and len(writers) == 1
    mid_a = project.annotations.find_mask(image_a, ctl.class_id)
    assert np.array_equal(project.annotations.load_mask(mid_a), expected_a)
    saves = [r for r in project.audit_log(50) if r["action"] == "mask.save" and r["entity_id"] == mid_a]
    edits = sum(json.loads(r["details"]).get("edits", 1) for r in saves)
    assert edits == 10 and 1 <= len(saves) <= 10  # every stroke is accounted for
    ctl.handle("press", (100, 200))
    ctl.handle("release", (100, 200))
    ctl.set_image(image_a)
    assert ctl.stack.count() == 10  # image A's history came back with it
    ctl.undo()
    after_undo = _saved(project, image_a, ctl.class_id, ctl)
    assert not after_undo[50, 200] and after_undo[50, 180]
    assert _saved(project, image_b, ctl.class_id, ctl)[200, 100]


def test_a_failed_save_is_reported(setup, qtbot, monkeypatch):
    from mskstudio.store.repo_annotations import AnnotationRepo

    ctl, project, image_id = setup

    def broken_save(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(AnnotationRepo, "save_mask", broken_save)
    ctl.set_tool("brush")
    with qtbot.waitSignal(ctl.save_failed, timeout=5000) as failure:
        ctl.handle("press", (50, 50))
        ctl.handle("release", (50, 50))
    assert failure.args[0] == image_id and "disk full" in failure.args[1]
    assert ctl.stack.count() == 1  # the stroke stays on screen and in the history

"""The Annotate dock inside the real main window: Edit › Undo follows the active tool."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

from mskstudio.gui.annotate.dock import AnnotateDock
from mskstudio.gui.commands import SetFlagCommand


def test_edit_undo_undoes_strokes_while_annotating_and_edits_otherwise(window, qtbot):
    window.load_workspaces(entries=[], menus=[], docks=[
        ("Annotate", "mskstudio.gui.annotate.dock:AnnotateDock", Qt.DockWidgetArea.RightDockWidgetArea)])
    dock = window.docks["Annotate"].view()
    assert isinstance(dock, AnnotateDock) and dock.isEnabled()
    ctl, project, image_id = dock.controller, window.project, window.image_id
    qtbot.waitUntil(lambda: ctl.image_id == image_id, timeout=10000)
    undo, redo = window.actions_by_name["undo"], window.actions_by_name["redo"]

    window.undo_stack.push(SetFlagCommand(project, [image_id], "excluded", True))  # a project edit
    assert project.images.record(image_id).excluded is True

    ctl.set_tool("brush")
    ctl.set_radius(6)
    ctl.handle("press", (40, 40))
    ctl.handle("release", (40, 40))
    ctl.flush()
    mask_id = project.annotations.find_mask(image_id, ctl.class_id, source="human")
    painted = int(project.annotations.load_mask(mask_id).sum())
    assert painted > 50
    undo.trigger()  # a tool is active: Edit › Undo takes back the stroke
    ctl.flush()
    assert project.annotations.load_mask(mask_id).sum() == 0
    assert project.images.record(image_id).excluded is True
    redo.trigger()
    ctl.flush()
    assert project.annotations.load_mask(mask_id).sum() == painted
    ctl.set_tool(None)
    undo.trigger()  # no tool: the project edit is undone and the stroke stays
    assert project.images.record(image_id).excluded is False
    assert project.annotations.load_mask(mask_id).sum() == painted


def test_closing_the_window_flushes_slow_saves_and_failures_reach_the_user(window, qtbot, monkeypatch):
    import time

    from mskstudio.store import Project
    from mskstudio.store.repo_annotations import AnnotationRepo

    window.load_workspaces(entries=[], menus=[], docks=[
        ("Annotate", "mskstudio.gui.annotate.dock:AnnotateDock", Qt.DockWidgetArea.RightDockWidgetArea)])
    ctl, image_id, root = window.docks["Annotate"].view().controller, window.image_id, window.project.root
    qtbot.waitUntil(lambda: ctl.image_id == image_id, timeout=10000)
    original = AnnotationRepo.save_mask

    def failing_save(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(AnnotationRepo, "save_mask", failing_save)
    ctl.set_tool("brush")
    ctl.handle("press", (30, 30))
    ctl.handle("release", (30, 30))
    qtbot.waitUntil(lambda: any("disk full" in e[1] for e in window.errors), timeout=5000)

    def slow_save(self, *args, **kwargs):
        time.sleep(0.5)  # the writer is still busy when the window closes
        return original(self, *args, **kwargs)

    monkeypatch.setattr(AnnotationRepo, "save_mask", slow_save)
    ctl.handle("press", (60, 60))
    ctl.handle("release", (60, 60))
    expected = ctl.mask.copy()
    assert ctl.saver.pending() == 1
    window.close()
    with Project.open(root) as project:
        mask_id = project.annotations.find_mask(image_id, ctl.class_id)
        assert np.array_equal(project.annotations.load_mask(mask_id), expected)
        assert expected[30, 30] and expected[60, 60]  # the failed stroke is in the later save

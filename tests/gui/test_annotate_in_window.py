"""The Annotate dock inside the real main window: Edit › Undo follows the active tool."""

from __future__ import annotations

from PySide6.QtCore import Qt

from mskstudio.gui.commands import SetFlagCommand
from mskstudio.gui.views.annotate import AnnotateDock


def test_edit_undo_undoes_strokes_while_annotating_and_edits_otherwise(window, qtbot):
    window.load_workspaces(entries=[], menus=[], docks=[
        ("Annotate", "mskstudio.gui.views.annotate:AnnotateDock", Qt.DockWidgetArea.RightDockWidgetArea)])
    dock = window.docks["Annotate"].widget()
    assert isinstance(dock, AnnotateDock) and dock.isEnabled()
    ctl, project, image_id = dock.controller, window.project, window.image_id
    qtbot.waitUntil(lambda: ctl.image_id == image_id, timeout=10000)
    undo, redo = window.actions_by_name["undo"], window.actions_by_name["redo"]

    window.undo_stack.push(SetFlagCommand(project, [image_id], "excluded", True))  # a project edit
    assert project.images.get(image_id)["excluded"] == 1

    ctl.set_tool("brush")
    ctl.set_radius(6)
    ctl.handle("press", (40, 40))
    ctl.handle("release", (40, 40))
    mask_id = project.annotations.find_mask(image_id, ctl.class_id, source="human")
    painted = int(project.annotations.load_mask(mask_id).sum())
    assert painted > 50
    undo.trigger()  # a tool is active: Edit › Undo takes back the stroke
    assert project.annotations.load_mask(mask_id).sum() == 0
    assert project.images.get(image_id)["excluded"] == 1
    redo.trigger()
    assert project.annotations.load_mask(mask_id).sum() == painted
    ctl.set_tool(None)
    undo.trigger()  # no tool: the project edit is undone and the stroke stays
    assert project.images.get(image_id)["excluded"] == 0
    assert project.annotations.load_mask(mask_id).sum() == painted

"""Menus and keyboard shortcuts of the main window (File, Edit, View, Jobs, Help).

Every action is created here once, with its shortcut, so the menus show every
shortcut and Help › Keyboard shortcuts can list them all from the menus themselves.
"""

from __future__ import annotations

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu


def _act(window, menu: QMenu, text: str, slot, shortcut=None, *, checkable=False, name=None) -> QAction:
    a = QAction(text, window)
    if shortcut is not None:
        seqs = shortcut if isinstance(shortcut, list) else [shortcut]
        a.setShortcuts([QKeySequence(s) for s in seqs])
    a.setCheckable(checkable)
    if checkable:
        a.toggled.connect(slot)
    else:
        a.triggered.connect(lambda _checked=False: slot())
    menu.addAction(a)
    window.actions_by_name[name or text] = a
    return a


def build_menus(w) -> None:
    """Create the menu bar of MainWindow ``w`` (actions land in ``w.actions_by_name``)."""
    w.actions_by_name = {}
    v = w.viewer
    bar = w.menuBar()

    m = bar.addMenu("&File")
    _act(w, m, "&New project…", w.ask_new_project, QKeySequence.StandardKey.New, name="new")
    _act(w, m, "&Open project…", w.ask_open_project, QKeySequence.StandardKey.Open, name="open")
    w.recent_menu = m.addMenu("Open &recent")
    w.recent_menu.aboutToShow.connect(w.fill_recent_menu)
    m.addSeparator()
    _act(w, m, "Import &DICOM folder…", w.ask_import_dicom, "Ctrl+I", name="import_dicom")
    _act(w, m, "Import &clinical CSV…", w.ask_import_clinical, "Ctrl+Shift+I", name="import_clinical")
    m.addSeparator()
    _act(w, m, "Project &info", w.show_project_info, "Ctrl+Shift+P", name="project_info")
    m.addSeparator()
    _act(w, m, "&Quit", w.close, QKeySequence.StandardKey.Quit, name="quit")

    m = bar.addMenu("&Edit")
    undo = w.undo_group.createUndoAction(w, "&Undo")
    undo.setShortcut(QKeySequence.StandardKey.Undo)
    redo = w.undo_group.createRedoAction(w, "&Redo")
    redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
    m.addActions([undo, redo])
    w.actions_by_name.update(undo=undo, redo=redo)

    m = bar.addMenu("&View")
    _act(w, m, "&Next image", lambda: w.step_image(1), ["PgDown", "]"], name="next")
    _act(w, m, "&Previous image", lambda: w.step_image(-1), ["PgUp", "["], name="previous")
    _act(w, m, "Next &unlabelled image", w.next_unlabelled, "U", name="next_unlabelled")
    m.addSeparator()
    presets = m.addMenu("Window / level presets")
    for i, name in enumerate(["DICOM window", "Bone", "Soft tissue", "Auto 1–99 %", "Full range"]):
        _act(w, presets, name, lambda i=i: v.apply_preset(i), str(i + 1), name=f"preset{i + 1}")
    _act(w, m, "&Invert", v.toggle_invert, "I", name="invert")
    _act(w, m, "Toggle &overlays", v.toggle_overlays, "O", name="toggle_overlays")
    m.addSeparator()
    _act(w, m, "&Fit to window", v.fit, "F", name="fit")
    _act(w, m, "Actual pixels (1:1)", v.actual_size, "Ctrl+1", name="actual_size")
    _act(w, m, "Rotate 90° &right", lambda: v.rotate(1), "R", name="rotate_right")
    _act(w, m, "Rotate 90° &left", lambda: v.rotate(-1), "Shift+R", name="rotate_left")
    _act(w, m, "Flip &horizontal", lambda: v.flip(True), "H", name="flip_h")
    _act(w, m, "Flip &vertical", lambda: v.flip(False), "V", name="flip_v")
    m.addSeparator()
    _act(w, m, "Pan / zoom tool", lambda: v.set_tool("pan"), "Esc", name="tool_pan")
    _act(w, m, "&Ruler (mm)", lambda: v.set_tool("ruler"), "M", name="tool_ruler")
    _act(w, m, "&Angle", lambda: v.set_tool("angle"), "A", name="tool_angle")
    _act(w, m, "&Delete measurements on this image", v.delete_all_measurements, "C",
         name="delete_measurements")
    m.addSeparator()
    w.docks_menu = m.addMenu("Panels")
    _act(w, m, "Reset layout", w.reset_layout, name="reset_layout")

    m = bar.addMenu("&Jobs")
    _act(w, m, "Show &jobs", w.show_jobs, "Ctrl+J", name="show_jobs")
    _act(w, m, "&Resume interrupted jobs", w.jobs_view.resume_interrupted, name="resume_jobs")
    _act(w, m, "&Import failures…", w.show_import_failures, name="import_failures")
    _act(w, m, "&Cancel all jobs", w.runner.cancel_all, name="cancel_all")

    m = bar.addMenu("&Help")
    _act(w, m, "&Keyboard shortcuts", w.show_shortcuts, "F1", name="shortcuts")
    _act(w, m, "&About mskstudio", w.show_about, name="about")


# Actions that act on the main viewer: their keys (1-5, M, A, F, R, ...) mean something only
# while the Viewer workspace is shown, so a board's own keys never meet them.
VIEWER_ACTIONS = ("preset1", "preset2", "preset3", "preset4", "preset5", "invert", "toggle_overlays",
                  "fit", "actual_size", "rotate_right", "rotate_left", "flip_h", "flip_v", "tool_pan",
                  "tool_ruler", "tool_angle", "delete_measurements")


def scope_viewer_keys(w, viewer_shown: bool) -> None:
    """Enable the viewer's actions only while the Viewer workspace is the current one."""
    for name in VIEWER_ACTIONS:
        w.actions_by_name[name].setEnabled(viewer_shown)


# Keys that are not menu actions: mouse gestures and keys of the viewer and the Annotate dock.
VIEWER_KEYS = [("Right-drag", "Window / level"), ("Wheel", "Zoom at the cursor"),
               ("Delete, Backspace", "Delete the selected measurement or box (undoable)"),
               ("Drag a box / its corner", "Move / resize the box (undoable)")]


def annotate_keys() -> list[tuple[str, str]]:
    from mskstudio.gui.annotate.panel import SHORTCUTS

    return [(key, f"{tool.capitalize()} tool") for tool, key in SHORTCUTS.items()] + [
        ("Enter / double click", "Close the polygon"), ("Esc", "Drop the polygon being drawn")]


def shortcut_entries(w) -> list[tuple[str, str, str]]:
    """(where, action, keys) for every key: the menus' shortcuts, then the keys of each
    workspace (``KEYS_HELP`` of its widget, active while it is shown), the viewer's and the
    Annotate dock's."""
    out: list[tuple[str, str, str]] = []

    def walk(menu: QMenu, path: str) -> None:
        for a in menu.actions():
            if a.menu() is not None:
                walk(a.menu(), f"{path} › {a.menu().title().replace('&', '')}")
            elif a.shortcuts():
                keys = ", ".join(s.toString(QKeySequence.SequenceFormat.NativeText) for s in a.shortcuts())
                out.append((path, a.text().replace("&", ""), keys))

    for top in w.menuBar().actions():
        if top.menu() is not None:
            walk(top.menu(), top.menu().title().replace("&", ""))
    out += [("Viewer", action, keys) for keys, action in VIEWER_KEYS]
    for i in range(w.workspace.count()):
        title = w.workspace.tabText(i)
        for keys, action in getattr(w.workspace.widget(i), "KEYS_HELP", []):
            out.append((f"{title} tab (while it has focus)", action, keys))
    if "Annotate" in getattr(w, "docks", {}):
        out += [("Annotate dock (on the viewer)", action, keys) for keys, action in annotate_keys()]
    return out

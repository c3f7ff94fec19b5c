"""What a view (a workspace tab, a dock, a menu hook) may use of the main window.

Views are built as ``View(window)`` and reach the window only through this contract,
typed, instead of looking attributes up by name: ``MainWindow`` implements it, and the
GUI tests' stub windows implement the same members, so a view never meets a window
without them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from PySide6.QtCore import SignalInstance
    from PySide6.QtGui import QUndoStack

    from mskstudio.gui.jobs.runner import JobRunner
    from mskstudio.store import Project


class ViewWindow(Protocol):
    project: Project | None        # None while no project is open
    runner: JobRunner              # the one GUI job runner
    undo_stack: QUndoStack         # every edit is a command on it
    project_changed: SignalInstance

    def open_image(self, image_id: int) -> None:
        """Show the image in the viewer (and the case form beside it)."""

    def show_in_viewer(self) -> None:
        """Bring the viewer's tab to the front."""

    def store_edited(self) -> None:
        """Labels or clinical fields changed outside the browser: refresh what shows them."""

    def show_error(self, title: str, message: str, details: str = "") -> None:
        """One dialog for a failure the user should see."""

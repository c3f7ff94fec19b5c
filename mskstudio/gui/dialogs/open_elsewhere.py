"""A project already open in another window: ask read-only or continue, and hold the lease.

The lease itself (``store/lease.py``) is Qt-free; this module asks the question and renews
the lease on a timer while the window has the project open.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QMessageBox, QWidget

from mskstudio.store import Project
from mskstudio.store.lease import RENEW_EVERY_S, Holder, Lease, open_elsewhere

READ_ONLY, CONTINUE = "read-only", "continue"


def ask_open_elsewhere(parent: QWidget, root: Path, holder: Holder) -> str | None:
    """READ_ONLY, CONTINUE or None (cancel)."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle("Project open elsewhere")
    box.setText(f"{Path(root).name} is open in another mskstudio window:\n{holder.describe()}.")
    box.setInformativeText(
        "Read-only is safe. Continuing is safe for the data (the database serialises the "
        "writes), but each window keeps its own undo history and does not see the other's "
        "edits until it reloads.")
    read_only = box.addButton("Open read-only", QMessageBox.ButtonRole.AcceptRole)
    go_on = box.addButton("Continue anyway", QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(read_only)
    box.exec()
    clicked = box.clickedButton()
    return READ_ONLY if clicked is read_only else CONTINUE if clicked is go_on else None


def open_asking(root: Path, ask: Callable[[Holder], str | None]) -> Project | None:
    """Open ``root``; if another window has it open, ``ask`` chooses read-only, continue or
    cancel (None).  Raises StoreError as ``Project.open`` does."""
    holder = open_elsewhere(root) if root.is_dir() else None
    choice = ask(holder) if holder is not None else CONTINUE
    if choice is None:
        return None
    if choice == READ_ONLY:
        return Project.open_readonly(root, f"open in another window, {holder.describe()}")
    return Project.open(root)


class LeaseKeeper(QObject):
    """Holds this window's lease on its open project and renews it while it stays open."""

    def __init__(self, parent: QObject):
        super().__init__(parent)
        self.lease: Lease | None = None
        self.timer = QTimer(self)
        self.timer.setInterval(RENEW_EVERY_S * 1000)
        self.timer.timeout.connect(self._renew)

    def hold(self, root: Path | None, *, writable: bool) -> None:
        self.release()
        if root is not None and writable:
            self.lease = Lease.take(root)
            if self.lease is not None:
                self.timer.start()

    def release(self) -> None:
        self.timer.stop()
        if self.lease is not None:
            self.lease.release()
            self.lease = None

    def _renew(self) -> None:
        if self.lease is not None:
            self.lease.renew()

"""Per-task layouts: each workspace remembers which docks it shows, so a board gets most of the window.

Labelling clusters, reviewing predictions, reading the dashboard or fixing label noise needs
the width of the window, not the Cases tree and the Case form beside it (at 1366 px those
left the Review image about 100 px wide).  The first time a board is shown only the Jobs dock
stays; a dock the user shows or hides there is remembered for that workspace, and the Viewer
keeps the docks it had.
"""

from __future__ import annotations

BOARD_DOCKS = ("jobs",)  # what a board shows at first: the running jobs, nothing beside it


class TaskLayouts:
    def __init__(self, window):
        self.window = window
        self.shown: dict[str, set[str]] = {}  # workspace title -> docks it shows
        self.current: str | None = None

    def _visible(self) -> set[str]:
        return {name for name, dock in self.window.docks.items() if not dock.isHidden()}

    def apply(self, title: str) -> None:
        """Leave the current workspace (remembering its docks) and lay out ``title``'s."""
        if title == self.current:
            return
        if self.current is not None:
            self.shown[self.current] = self._visible()
        self.current = title
        wanted = self.shown.get(title)
        if wanted is None:
            wanted = self._visible() if title == "Viewer" else set(BOARD_DOCKS)
        for name, dock in self.window.docks.items():
            dock.setVisible(name in wanted)

    def reset(self) -> None:
        self.shown.clear()
        self.current = None

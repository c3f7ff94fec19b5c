"""A dock whose view scrolls vertically when the dock is shorter than the view's minimum."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QDockWidget, QFrame, QScrollArea


class VerticalScroll(QScrollArea):
    """Scrolls up and down only: as narrow as the view allows, but never narrower."""

    def __init__(self):
        super().__init__()
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

    def minimumSizeHint(self) -> QSize:
        view = self.widget()
        width = view.minimumSizeHint().width() if view is not None else 0
        return QSize(width + self.verticalScrollBar().sizeHint().width(), 60)


class ScrollingDock(QDockWidget):
    """A dock whose view scrolls when the dock is shorter than the view's minimum.

    The docks' own minimum heights added up to 1,221 px in the right-hand column (Case,
    Similar cases, Annotate), so the window could not be made shorter than a 1080p
    screen.  ``view()`` is the widget the dock shows (``widget()`` is the scroll area).
    """

    def __init__(self, title: str, view, parent=None):
        super().__init__(title, parent)
        self._view = view
        scroll = VerticalScroll()
        scroll.setWidget(view)
        self.setWidget(scroll)

    def view(self):
        return self._view

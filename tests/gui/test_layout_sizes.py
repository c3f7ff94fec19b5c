"""No widget cut at 1366×768 and 1920×1080, in every workspace of the real window (issue 22, item 11).

A widget is cut when the layout gives it less than its minimum size (a button reading "luster
nov"), or when it lies partly outside the window.  Each workspace is shown at both sizes and a
screenshot is saved (``MSKSTUDIO_SCREENSHOT_DIR``, default the test's tmp folder) for a person
to look at.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QRect
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QComboBox,
    QDockWidget,
    QLabel,
    QLineEdit,
    QSpinBox,
    QTabBar,
)

pytestmark = pytest.mark.gui
HERE = Path(__file__).resolve().parent
SIZES = [(1366, 768), (1920, 1080)]
CHECKED = (QAbstractButton, QComboBox, QLineEdit, QSpinBox, QLabel)


def cut_widgets(window) -> list[str]:
    """Visible widgets narrower/shorter than their minimum, or outside the window."""
    frame = QRect(0, 0, window.width(), window.height())
    out = []
    for w in (c for t in CHECKED for c in window.findChildren(t)):
        if not w.isVisibleTo(window) or not w.isVisible() or w.width() <= 0:
            continue
        if isinstance(w, QLabel) and (w.wordWrap() or not w.text() or w.objectName() == "viewerCorner"):
            continue
        if isinstance(w.parentWidget(), (QComboBox, QAbstractSpinBox, QTabBar, QDockWidget)):
            continue  # a combo's or spin box's own editor, tab scroll arrows, a dock's title buttons
        if _inside_scroll_area(w, window):
            continue  # scrolls into view: nothing is lost
        hint = w.minimumSizeHint()
        name = w.text() if hasattr(w, "text") and isinstance(w.text(), str) else type(w).__name__
        if w.width() + 1 < hint.width() or w.height() + 1 < hint.height():
            out.append(f"{type(w).__name__} {name!r}: {w.width()}×{w.height()} < minimum "
                       f"{hint.width()}×{hint.height()}")
            continue
        top_left = w.mapTo(window, w.rect().topLeft())
        if not frame.contains(QRect(top_left, w.size()).adjusted(1, 1, -1, -1)):
            out.append(f"{type(w).__name__} {name!r} lies outside the window")
    return out


def _inside_scroll_area(w, window) -> bool:
    from PySide6.QtWidgets import QAbstractScrollArea

    p = w.parentWidget()
    while p is not None and p is not window:
        if isinstance(p, QAbstractScrollArea):
            return True
        p = p.parentWidget()
    return False


@pytest.fixture
def full_window(qtbot, qapp, project_copy):
    from mskstudio.gui.app import make_app
    from mskstudio.gui.main_window import MainWindow

    make_app()
    w = MainWindow(project_copy)
    w.runner.subprocess_prefix = [sys.executable, str(HERE / "jobhost.py")]
    w.confirm = lambda *a: True
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.viewer.rad is not None, timeout=15000)
    yield w
    w.runner.shutdown(5)
    w.viewer.loader.wait(5000)
    for d in list(w.dialogs):
        with contextlib.suppress(RuntimeError):
            d.close()


@pytest.mark.parametrize("size", SIZES, ids=[f"{a}x{b}" for a, b in SIZES])
def test_no_widget_is_cut_in_any_workspace(full_window, qtbot, tmp_path, size):
    w = full_window
    shots = Path(os.environ.get("MSKSTUDIO_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    w.resize(*size)
    w.reset_layout()
    qtbot.wait(50)
    assert (w.width(), w.height()) == size, f"the window cannot be made {size}: minimum {w.minimumSizeHint()}"
    problems = {}
    for i in range(w.workspace.count()):
        w.workspace.setCurrentIndex(i)
        w.apply_task_layout()
        qtbot.wait(30)
        title = w.workspace.tabText(i)
        w.grab().save(str(shots / f"{title.replace(' ', '_').lower()}-{size[0]}x{size[1]}.png"))
        cut = cut_widgets(w)
        if cut:
            problems[title] = cut
    assert not problems, problems


def test_the_window_opens_fitted_to_the_screen(qtbot, qapp, project_copy):
    from mskstudio.gui.app import make_app
    from mskstudio.gui.main_window import MainWindow

    make_app()
    w = MainWindow(project_copy, load_workspaces=False)  # no saved layout: the first start
    qtbot.addWidget(w)
    free = w.screen().availableGeometry()
    assert w.width() <= free.width() and w.height() <= free.height()
    assert w.width() == min(1600, free.width()) and w.height() == min(1000, free.height())
    assert free.contains(w.geometry())
    w.resize(free.width() + 900, free.height() + 500)  # as saved on a larger monitor
    w.fit_to_screen(w.width(), w.height())
    assert w.width() <= free.width() and w.height() <= free.height()

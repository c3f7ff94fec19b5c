"""How a workspace or dock follows the main window: a new project and finished jobs.

Every board needs the same wiring.  The window is a ``ViewWindow`` (window_contract.py);
a test's stub runner may lack the job signals, so those are connected where they exist.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mskstudio.gui.window_contract import ViewWindow


def follow_window(window: ViewWindow, reload: Callable[[], None], *, on_returned: Callable | None = None,
                  on_errored: Callable | None = None) -> None:
    """Reload on ``project_changed``, hand job results and errors to the board, then reload once."""
    window.project_changed.connect(reload)
    runner = window.runner
    if on_returned is not None and hasattr(runner, "job_returned"):
        runner.job_returned.connect(on_returned)
    if on_errored is not None and hasattr(runner, "job_errored"):
        runner.job_errored.connect(on_errored)
    reload()

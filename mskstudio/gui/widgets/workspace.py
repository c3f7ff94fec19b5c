"""How a workspace or dock follows the main window: a new project and finished jobs.

Every board needs the same wiring; the window may be a test stand-in that lacks some
signals, so each one is connected only where it exists.
"""

from __future__ import annotations

from collections.abc import Callable


def follow_window(window, reload: Callable[[], None], *, on_returned: Callable | None = None,
                  on_errored: Callable | None = None) -> None:
    """Reload on ``project_changed``, hand job results and errors to the board, then reload once."""
    changed = getattr(window, "project_changed", None)
    if changed is not None:
        changed.connect(reload)
    runner = getattr(window, "runner", None)
    if on_returned is not None and hasattr(runner, "job_returned"):
        runner.job_returned.connect(on_returned)
    if on_errored is not None and hasattr(runner, "job_errored"):
        runner.job_errored.connect(on_errored)
    reload()

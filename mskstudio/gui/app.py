"""``mskstudio-gui [PROJECT]``: start the desktop application.

Also the first-start behaviour of an installed app: with no project and no recent
one, it offers to build the demo project; an unexpected error anywhere writes a log
file with the traceback and tells the user where it is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import sys
import traceback
from pathlib import Path

from mskstudio.store.media import storage_failure

log = logging.getLogger("mskstudio")


def log_dir() -> Path:
    """Where logs go: beside the settings (``MSKSTUDIO_SETTINGS_DIR``) or the user's state folder."""
    base = os.environ.get("MSKSTUDIO_SETTINGS_DIR")
    if base:
        folder = Path(base) / "logs"
    elif sys.platform == "win32":
        folder = Path(os.environ.get("LOCALAPPDATA", Path.home())) / "mskstudio" / "logs"
    elif sys.platform == "darwin":
        folder = Path.home() / "Library" / "Logs" / "mskstudio"
    else:
        folder = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "mskstudio" / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def setup_logging() -> Path:
    path = log_dir() / "mskstudio.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return path


def write_crash_log(exc_type, exc, tb) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = log_dir() / f"crash-{stamp}.log"
    path.write_text("".join(traceback.format_exception(exc_type, exc, tb)), encoding="utf-8")
    return path


def show_storage_failure(problem: str) -> None:
    """An edit that could not be saved for lack of disk: say so in one line, and that it was not
    saved (every edit commits at once, so the one that failed is the only one lost)."""
    log.error("could not save: %s", problem)
    print(f"mskstudio: could not save: {problem}", file=sys.stderr)
    try:
        from PySide6.QtWidgets import QApplication, QMessageBox

        if QApplication.instance() is not None:
            QMessageBox.critical(None, "mskstudio: could not save",
                                 f"The last change was not saved: {problem}.\n\nEverything saved before it "
                                 "is intact. Free some space (or make the disk writable) and make the change again.")
    except Exception as inner:  # noqa: BLE001 - the line above was printed; a failing dialog must not hide it
        print(f"mskstudio: could not show the error dialog ({inner})", file=sys.stderr)


def install_crash_handler() -> None:
    """Uncaught exceptions (also those raised inside Qt slots) → crash log + a message."""

    def handler(exc_type, exc, tb):
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        if (problem := storage_failure(exc)) is not None:
            show_storage_failure(problem)  # not a bug: no crash log (it may not fit on the disk either)
            return
        path = write_crash_log(exc_type, exc, tb)
        log.error("unexpected error, details in %s", path)
        print(f"mskstudio: unexpected error ({exc}); the traceback is in {path}", file=sys.stderr)
        try:
            from PySide6.QtWidgets import QApplication, QMessageBox

            if QApplication.instance() is not None:
                QMessageBox.critical(None, "mskstudio: unexpected error",
                                     f"{exc_type.__name__}: {exc}\n\nThe details were written to\n{path}\n"
                                     "Your project is safe: every edit was saved when it was made.")
        except Exception as inner:  # the log is written; a failing dialog must not hide that
            print(f"mskstudio: could not show the error dialog ({inner})", file=sys.stderr)

    sys.excepthook = handler


def make_app(argv: list[str] | None = None):
    """The QApplication, themed (reused when one exists, as under pytest-qt)."""
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from mskstudio.gui.theme import apply_theme

    app = QApplication.instance() or QApplication(argv or sys.argv[:1])
    app.setApplicationName("mskstudio")
    app.setOrganizationName("mskstudio")
    try:
        from mskstudio.resources import resource_path

        app.setWindowIcon(QIcon(str(resource_path("icons/mskstudio.png"))))
    except (ImportError, OSError) as exc:  # an icon is cosmetic; say so and go on
        log.warning("no application icon: %s", exc)
    apply_theme(app)
    return app


def offer_demo(window) -> None:
    """First start: no project given, none recent → offer to build the demo project."""
    from PySide6.QtWidgets import QMessageBox

    from mskstudio.gui import settings as prefs

    if window.project is not None or prefs.recent_projects():
        return
    target = Path.home() / "mskstudio-demo.mskproj"
    answer = QMessageBox.question(
        window, "Welcome to mskstudio",
        "No project is open yet.\n\nBuild the demo project from synthetic phantom radiographs "
        f"(about two minutes) in\n{target}?\n\nLogs are written to {log_dir()}.")
    if answer == QMessageBox.StandardButton.Yes:
        window.build_demo(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mskstudio-gui", description="mskstudio desktop application")
    parser.add_argument("project", nargs="?", help="project folder (NAME.mskproj) to open")
    parser.add_argument("--screenshot", metavar="PNG", help="save a screenshot of the window once it "
                        "has shown the first image, then quit (smoke tests, documentation)")
    parser.add_argument("--quit-after-ms", type=int, default=0, metavar="MS",
                        help="with --screenshot: wait this long after the first image before grabbing")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    log_path = setup_logging()
    install_crash_handler()
    from mskstudio.gui.platform_check import xcb_problem

    problem = xcb_problem()
    if problem:  # before Qt aborts with a message that names no package
        log.error(problem)
        print(problem, file=sys.stderr)
        return 3
    app = make_app()
    from mskstudio.gui.main_window import MainWindow

    window = MainWindow(args.project)
    window.show()
    log.info("started (log: %s)", log_path)
    if args.screenshot:
        schedule_screenshot(app, window, Path(args.screenshot), args.quit_after_ms)
    else:
        offer_demo(window)
    return app.exec()


def schedule_screenshot(app, window, path: Path, delay_ms: int, timeout_ms: int = 60_000) -> None:
    """Grab the window after the first image is shown (or after a timeout), then quit."""
    from PySide6.QtCore import QTimer

    def grab() -> None:
        ok = window.grab().save(str(path))
        print(f"screenshot {'saved to' if ok else 'FAILED for'} {path}")
        app.exit(0 if ok else 1)

    done = {"armed": False}

    def arm(*_):
        if not done["armed"]:
            done["armed"] = True
            QTimer.singleShot(max(delay_ms, 100), grab)

    window.viewer.image_loaded.connect(arm)
    QTimer.singleShot(timeout_ms, arm)
    if window.project is None:
        arm()


if __name__ == "__main__":
    raise SystemExit(main())

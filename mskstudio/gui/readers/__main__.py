"""``python -m mskstudio.gui.readers PROJECT STUDY --reader NAME``: the reading window alone
(what ``mskstudio reader-study read`` execs), without the main window and its menus."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mskstudio reader-study read")
    parser.add_argument("project")
    parser.add_argument("study")
    parser.add_argument("--reader", required=True)
    args = parser.parse_args(argv)

    from PySide6.QtWidgets import QApplication

    from mskstudio.gui.readers.window import open_reading_window
    from mskstudio.store import Project

    app = QApplication.instance() or QApplication(sys.argv[:1])
    with Project.open(args.project) as project:
        project.author = args.reader
        study = int(args.study) if args.study.isdigit() else args.study
        window = open_reading_window(project, study, args.reader)
        window.show()
        return app.exec()


if __name__ == "__main__":
    raise SystemExit(main())

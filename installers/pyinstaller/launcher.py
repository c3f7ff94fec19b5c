"""Entry point of the bundled application (one executable for GUI and CLI).

``mskstudio`` with a subcommand (``mskstudio info X``, ``--version``) is the CLI;
with no argument, a project path, or ``--gui`` it opens the desktop application.
The Linux/macOS bundles also ship ``mskstudio-gui`` which always opens the GUI.
"""

import os
import sys


def _wants_gui(argv: list[str]) -> bool:
    if os.path.basename(sys.argv[0]).startswith("mskstudio-gui"):
        return True
    if not argv:
        return True
    if argv[0] == "--gui":
        del argv[0]
        return True
    return argv[0].endswith(".mskproj") or os.path.isdir(argv[0]) and argv[0].endswith(".mskproj/")


def main() -> int:
    argv = sys.argv[1:]
    if _wants_gui(argv):
        from mskstudio.gui.app import main as gui_main

        sys.argv = [sys.argv[0], *argv]
        return gui_main()
    from mskstudio.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    # PyInstaller bundles need this for the importer's spawned worker processes.
    import multiprocessing

    multiprocessing.freeze_support()
    raise SystemExit(main())

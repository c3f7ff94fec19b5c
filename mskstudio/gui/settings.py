"""Where the GUI keeps its preferences (QSettings, INI format).

``MSKSTUDIO_SETTINGS_DIR`` points the settings at a folder (tests, screenshots,
portable installs); otherwise the platform's user configuration folder is used.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QSettings

MAX_RECENT = 10


def settings() -> QSettings:
    folder = os.environ.get("MSKSTUDIO_SETTINGS_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        return QSettings(str(Path(folder) / "mskstudio.ini"), QSettings.Format.IniFormat)
    return QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope, "mskstudio", "mskstudio")


def recent_projects() -> list[str]:
    value = settings().value("recent", [])
    if isinstance(value, str):
        value = [value]
    return [v for v in (value or []) if v]


def add_recent(path: str) -> list[str]:
    path = str(Path(path).resolve())
    items = [path] + [p for p in recent_projects() if p != path]
    s = settings()
    s.setValue("recent", items[:MAX_RECENT])
    s.sync()
    return items[:MAX_RECENT]

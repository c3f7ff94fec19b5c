"""File › Import DICOM SEG / annotations folder, Export / Import labels, Share a copy.

Each entry asks for a path (dialogs ask), then submits the same job the CLI runs
(``import-seg``, ``import-annotations``, ``export-labels``, ``import-labels``); when the
job returns, a summary lists its counts and its problem lines (unknown images,
conflicts with human labels, unreadable files), one line each.
"""

from __future__ import annotations

import json

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QFileDialog, QMessageBox

from mskstudio.gui.exports import share

EXCHANGE_KINDS = {
    "import-seg": "Import DICOM SEG",
    "import-annotations": "Import annotations",
    "export-labels": "Export labels",
    "import-labels": "Import labels",
}
LINE_KEYS = ("unknown", "conflict_lines", "problems")


def ask_import_seg(window) -> int | None:
    if not window._need_project():
        return None
    paths, _ = QFileDialog.getOpenFileNames(window, "Import DICOM SEG files", "", "DICOM (*.dcm);;All files (*)")
    return window.runner.submit("import-seg", {"paths": list(paths)}) if paths else None


def ask_import_annotations(window) -> int | None:
    if not window._need_project():
        return None
    folder = QFileDialog.getExistingDirectory(window, "Import an export-annotations folder (seg/, boxes, labels)")
    if not folder:
        return None
    return window.runner.submit("import-annotations", {"path": folder, "replace_human": _replace_human(window)})


def ask_export_labels(window) -> int | None:
    if not window._need_project():
        return None
    path, chosen = QFileDialog.getSaveFileName(window, "Export labels", "labels.csv",
                                               "CSV (*.csv);;Parquet (*.parquet)")
    if not path:
        return None
    if not path.lower().endswith((".csv", ".parquet")):
        path += ".parquet" if "parquet" in chosen.lower() else ".csv"
    return window.runner.submit("export-labels", {"path": path})


def ask_import_labels(window) -> int | None:
    if not window._need_project():
        return None
    path, _ = QFileDialog.getOpenFileName(window, "Import labels", "", "Label tables (*.csv *.parquet);;All (*)")
    if not path:
        return None
    return window.runner.submit("import-labels", {"path": path, "replace_human": _replace_human(window)})


def _replace_human(window) -> bool:
    """Ask once per import; the safe answer (keep the human labels, list conflicts) is the default."""
    answer = QMessageBox.question(
        window, "Human labels",
        "Where the file disagrees with a label a person set in this project, replace that human label?\n\n"
        "No (default): keep the human label and list the conflict.",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def summary_text(result: dict) -> str:
    """Counts first, then every problem line (of each part, for import-annotations)."""
    parts = {k: v for k, v in result.items() if isinstance(v, dict)} or {"": result}
    counts, lines = [], []
    for name, part in parts.items():
        numbers = {k: v for k, v in part.items() if not isinstance(v, list | dict)}
        counts.append((f"{name}: " if name else "") + json.dumps(numbers))
        for key in LINE_KEYS:
            lines += part.get(key, [])
    text = "\n".join(counts)
    if lines:
        text += f"\n\n{len(lines)} line(s) to look at:\n" + "\n".join(lines)
    return text


def _job_returned(window, job_id: int, result) -> None:
    h = window.runner.handle(job_id)
    if h is None or h.kind not in EXCHANGE_KINDS or not isinstance(result, dict):
        return
    from mskstudio.gui.dialogs import info as dialogs

    window.dialogs.append(dialogs.text(window, f"{EXCHANGE_KINDS[h.kind]} — job {job_id}", summary_text(result)))
    if h.kind != "export-labels":
        window.project_changed.emit()


def add_exchange_menu(window) -> None:
    """Put the entries into the File menu, after the DICOM and clinical imports."""
    file_menu = next(a.menu() for a in window.menuBar().actions() if a.menu() and a.text() == "&File")
    before = window.actions_by_name.get("project_info")
    anchor = file_menu.insertSeparator(before) if before is not None else None
    for name, text, slot in (
            ("import_seg", "Import DICOM &SEG…", ask_import_seg),
            ("import_annotations", "Import &annotations folder…", ask_import_annotations),
            ("export_labels", "&Export labels (CSV / Parquet)…", ask_export_labels),
            ("import_labels", "Import &labels (CSV / Parquet)…", ask_import_labels),
            ("share_copy", "S&hare a copy (re-keyed)…", share.ask_share)):
        a = QAction(text, window)
        a.triggered.connect(lambda _checked=False, s=slot: s(window))
        if anchor is not None:
            file_menu.insertAction(anchor, a)
        else:
            file_menu.addAction(a)
        window.actions_by_name[name] = a
    window.runner.job_returned.connect(lambda job_id, result: _job_returned(window, job_id, result))
    window.runner.job_returned.connect(lambda job_id, result: share.job_returned(window, job_id, result))

"""File › Share a copy…: the ``share`` job (``io/share.py``) from the window.

Asks where to write the copy, runs it as a job (progress and cancel in the Jobs dock; it
rewrites every stored DICOM file, so it runs in a subprocess), and when it returns says
what was written and that the copy's key was not kept.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog

from mskstudio.store import SUFFIX

KIND = "share"


def default_copy_path(project_root: Path) -> Path:
    """``NAME-shared.mskproj`` beside the project, ``-shared-2`` … when that exists already."""
    stem = Path(project_root).name.removesuffix(SUFFIX)
    candidate = Path(project_root).with_name(f"{stem}-shared{SUFFIX}")
    n = 2
    while candidate.exists():
        candidate = Path(project_root).with_name(f"{stem}-shared-{n}{SUFFIX}")
        n += 1
    return candidate


def ask_share(window, path: str | None = None) -> int | None:
    """Ask for the new folder (or take ``path``), then submit the job; its id, or None."""
    if not window._need_project():
        return None
    project = window.project
    if project.readonly:
        window.show_error("Share a copy", f"The project is read-only here ({project.readonly_reason}); "
                          f"share it from a terminal: mskstudio share {project.root} OUT")
        return None
    if path is None:
        path, _ = QFileDialog.getSaveFileName(
            window, "Share a copy (re-keyed; the new key is not kept)", str(default_copy_path(project.root)),
            f"mskstudio project (*{SUFFIX})")
        if not path:
            return None
    if not path.endswith(SUFFIX):
        path += SUFFIX
    if Path(path).exists():
        window.show_error("Share a copy", f"{path} already exists; a shared copy is written to a new folder.")
        return None
    return window.runner.submit(KIND, {"out": path})


def summary_text(result: dict) -> str:
    return (f"Wrote {result['path']}\n\n{result['patients']} patients and {result['images']} images "
            f"re-keyed with a fresh key ({result['key_fingerprint']}), which was not kept: the copy "
            "holds no key, its pseudonyms cannot be recomputed from yours, and it cannot be extended "
            "by imports. The audit log, import failures, job parameters and original IDs were left out.")


def job_returned(window, job_id: int, result) -> None:
    h = window.runner.handle(job_id)
    if h is None or h.kind != KIND or not isinstance(result, dict):
        return
    from mskstudio.gui.dialogs import info as dialogs

    window.dialogs.append(dialogs.text(window, f"Share a copy — job {job_id}", summary_text(result)))

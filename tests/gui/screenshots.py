"""Save screenshots of the main views: ``python tests/gui/screenshots.py PROJECT OUTDIR``.

Runs offscreen; each view is grabbed with ``widget.grab().save()``.  The main window
shot, with a measurement, an overlay and the jobs dock filled, is what
``resources/screenshot_main.png`` is made from.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MSKSTUDIO_SETTINGS_DIR", tempfile.mkdtemp(prefix="mskstudio-shots-"))


def _wait(app, predicate, seconds: float = 20.0) -> None:
    import time

    end = time.monotonic() + seconds
    while not predicate() and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def main(project: str, outdir: str) -> list[Path]:
    import shutil

    import numpy as np

    from mskstudio.gui.app import make_app
    from mskstudio.gui.main_window import MainWindow

    # work on a copy: the shots run jobs, and the user's project stays as it was
    copy = Path(tempfile.mkdtemp(prefix="mskstudio-shots-")) / Path(project).name
    shutil.copytree(project, copy)
    project = str(copy)
    app = make_app()
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    w = MainWindow(project)
    w.resize(1680, 1000)
    w.show()
    _wait(app, lambda: w.viewer.rad is not None)
    # a lesion-bearing image reads best
    row = w.project.db.one("SELECT i.id FROM images i JOIN studies s ON s.id = i.study_id "
                           "JOIN clinical c ON c.patient_id = s.patient_id "
                           "WHERE c.dignity = 'malignant' ORDER BY i.rows * i.cols DESC LIMIT 1")
    if row:
        w.open_image(row[0])
        _wait(app, lambda: w.viewer.rad is not None)
    _wait(app, lambda: w.browser.model.pending() == 0, 5)
    v = w.viewer
    rows, cols = v.row.rows, v.row.cols
    v.add_ruler((cols * 0.3, rows * 0.25), (cols * 0.7, rows * 0.3))
    v.add_angle((cols * 0.35, rows * 0.7), (cols * 0.5, rows * 0.6), (cols * 0.65, rows * 0.72))
    yy, xx = np.mgrid[0:64, 0:64]
    heat = np.exp(-((yy - 40) ** 2 + (xx - 30) ** 2) / 60.0).astype(np.float32)
    v.set_overlay("heatmap", heat, 0.35)
    v.set_boxes([{"x0": cols * 0.35, "y0": rows * 0.5, "x1": cols * 0.62, "y1": rows * 0.78,
                  "label": "overlay layers (illustration)"}])
    empty = Path(tempfile.mkdtemp(prefix="mskstudio-shots-empty-"))
    w.runner.submit("import", {"paths": [str(empty)], "copy": True})
    _wait(app, lambda: not w.runner.active_jobs(), 20)
    w.runner.submit("import-clinical", {"path": str(Path(project) / "missing.csv")})
    _wait(app, lambda: not w.runner.active_jobs(), 10)
    for d in w.dialogs:  # error boxes are not part of the picture
        with contextlib.suppress(RuntimeError):
            d.close()
    app.processEvents()
    saved = []
    for name, widget in [("main", w), ("viewer", v), ("browser", w.browser), ("case_panel", w.case_panel),
                         ("jobs", w.jobs_view)]:
        path = out / f"{name}.png"
        widget.grab().save(str(path))
        saved.append(path)
    w.case_panel.tabs.setCurrentWidget(w.case_panel.labels)
    w.case_panel.grab().save(str(out / "case_labels.png"))
    w.case_panel.tabs.setCurrentWidget(w.case_panel.tags)
    w.case_panel.grab().save(str(out / "case_dicom.png"))
    shortcuts = w.show_shortcuts()
    app.processEvents()
    shortcuts.grab().save(str(out / "shortcuts.png"))
    saved += [out / "case_labels.png", out / "case_dicom.png", out / "shortcuts.png"]
    w.close()
    return saved


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python tests/gui/screenshots.py PROJECT OUTDIR")
    for p in main(sys.argv[1], sys.argv[2]):
        print(p)

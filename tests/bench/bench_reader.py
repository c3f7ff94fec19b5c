"""Reading loop figures (printed, not asserted): ``python tests/bench/bench_reader.py``.

Key press (Enter after an answer key) → next case's full-resolution image shown and
painted, at 3000×2500 (rows × columns), in the blinded reading window:

* with prefetch (the window decodes the next cases while the reader reads; the bench
  waits for it, as a reader's seconds per case would),
* without prefetch (``PREFETCH = 0``): the thumbnail first, the full image when the
  decode worker is done — what the main viewer does.

    PYTHONPATH=. .venv/bin/python tests/bench/bench_reader.py [--cases 30]   (from a worktree: its code)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MSKSTUDIO_SETTINGS_DIR", tempfile.mkdtemp(prefix="mskstudio-bench-"))
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
from bench_viewer import write_big_dicom  # noqa: E402

ROWS, COLS = 3000, 2500


def make_project(root: Path, dicoms: list[Path], n_cases: int):
    """A project of ``n_cases`` images referencing the big DICOMs, truth labels, one study."""
    from mskstudio.io.dicom import read_radiograph, thumbnail_png
    from mskstudio.ml.readers.setup import create_study
    from mskstudio.store import Project

    project = Project.create(root)
    pngs = [thumbnail_png(read_radiograph(d)) for d in dicoms]
    with project.db.transaction() as c:
        c.executemany("INSERT INTO patients(id, pseudonym) VALUES (?, ?)",
                      [(i + 1, f"P-{i:08x}") for i in range(n_cases)])
        c.executemany("INSERT INTO studies(id, patient_id, study_uid) VALUES (?, ?, ?)",
                      [(i + 1, i + 1, f"1.2.3.{i}") for i in range(n_cases)])
        c.executemany(
            "INSERT INTO images(id, study_id, sop_uid, source_path, rows, cols, spacing_row_mm, spacing_col_mm, "
            "spacing_source, photometric, bits_stored) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [(i + 1, i + 1, f"1.2.4.{i}", str(dicoms[i % len(dicoms)]), ROWS, COLS, 0.139, 0.139, "pixel",
              "MONOCHROME2", 12) for i in range(n_cases)])
        c.executemany("INSERT INTO thumbnails(image_id, png) VALUES (?, ?)",
                      [(i + 1, pngs[i % len(pngs)]) for i in range(n_cases)])
    ls = project.labels.label_set("dx")
    a, b = project.labels.class_id(ls, "lesion"), project.labels.class_id(ls, "normal")
    ids = project.images.ids()
    project.labels.set_labels(ids[::2], ls, a, source="import")
    project.labels.set_labels(ids[1::2], ls, b, source="import")
    sid = create_study(project, {"name": "bench", "label_set": "dx", "readers": "r1", "arms": "image", "seed": 0})
    return project, sid


def run(project, sid, app, *, prefetch: bool, n: int) -> list[float]:
    from PySide6.QtCore import QEventLoop, Qt
    from PySide6.QtTest import QTest

    from mskstudio.gui.readers import window as rw

    rw.PREFETCH = 2 if prefetch else 0
    w = rw.open_reading_window(project, sid, "r1")
    w.resize(1600, 1000)
    w.show()

    def spin(pred, seconds=60.0):
        end = time.perf_counter() + seconds
        while not pred() and time.perf_counter() < end:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
            time.sleep(0.0005)

    shown = lambda: (w.case is not None and w.viewer.rad is not None  # noqa: E731
                     and w.viewer.image_id == w.case.image_id)
    spin(shown)
    times = []
    def prefetched() -> bool:
        ahead = w.session.upcoming_image_ids(rw.PREFETCH + 1)[1:]
        return set(ahead) <= set(w._ahead) and all(f.done() for f in w._ahead.values())

    for _ in range(min(n, w.case.total - 1)):
        spin(prefetched)
        time.sleep(0.3)  # the reader reads meanwhile (and the event loop idles)
        app.processEvents()
        w.choose(1)
        t0 = time.perf_counter()
        QTest.keyClick(w, Qt.Key.Key_Return)
        spin(shown)
        w.viewer.view.viewport().repaint()  # the frame is painted
        times.append(time.perf_counter() - t0)
    w.close()
    return times


def main() -> None:
    import mskstudio
    from mskstudio.gui.app import make_app

    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=30)
    args = ap.parse_args()
    print(f"code: {Path(mskstudio.__file__).parent}, load average {os.getloadavg()[0]:.1f}, "
          f"{os.cpu_count()} cores")
    tmp = Path(tempfile.mkdtemp(prefix="mskstudio-bench-reader-"))
    t = time.perf_counter()
    dicoms = [write_big_dicom(tmp / f"big{k}.dcm", rows=ROWS, cols=COLS) for k in range(3)]
    app = make_app()
    for prefetch in (True, False):
        project, sid = make_project(tmp / f"reader-{prefetch}.mskproj", dicoms, args.cases + 1)
        if prefetch:
            print(f"setup: {args.cases + 1} cases of {ROWS}x{COLS} in {time.perf_counter() - t:.1f} s")
        times = np.array(run(project, sid, app, prefetch=prefetch, n=args.cases)) * 1000
        label = "with prefetch" if prefetch else "without prefetch (thumbnail, then decode)"
        print(f"key press -> next full image painted, {label}: n={len(times)}, "
              f"p50 {np.percentile(times, 50):.1f} ms, p95 {np.percentile(times, 95):.1f} ms, "
              f"max {times.max():.1f} ms")
        project.close()


if __name__ == "__main__":
    main()

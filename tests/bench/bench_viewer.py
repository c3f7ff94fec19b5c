"""Viewer and shell figures (printed, not asserted): ``python tests/bench/bench_viewer.py``.

* open a 50 000-image project to the first thumbnail grid,
* open a 4000×3000 radiograph to the first full-resolution render,
* window/level drag frame time (p50/p95),
* event-loop lag (p99) while a CPU-heavy job runs in the subprocess lane.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MSKSTUDIO_SETTINGS_DIR", tempfile.mkdtemp(prefix="mskstudio-bench-"))
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "gui"))

import numpy as np  # noqa: E402


def write_big_dicom(path: Path, rows: int = 3000, cols: int = 4000) -> Path:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID = "DX", "BENCH"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.139, 0.139]
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    yy, xx = np.mgrid[0:rows, 0:cols]
    img = 800 + 2400 * np.exp(-(((xx - cols / 2) / (cols / 6)) ** 2)) + 200 * np.sin(yy / 50.0)
    ds.PixelData = np.clip(img, 0, 4095).astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def make_big_project(root: Path, n_images: int, dicom: Path):
    from mskstudio.io.dicom import read_radiograph, thumbnail_png
    from mskstudio.store import Project

    project = Project.create(root)
    png = thumbnail_png(read_radiograph(dicom))
    n_patients = n_images // 5
    with project.db.transaction() as c:
        c.executemany("INSERT INTO patients(id, pseudonym) VALUES (?, ?)",
                      [(p + 1, f"P-{p:08x}") for p in range(n_patients)])
        c.executemany("INSERT INTO studies(id, patient_id, study_uid, study_date) VALUES (?, ?, ?, ?)",
                      [(p + 1, p + 1, f"1.2.3.{p}", "20240101") for p in range(n_patients)])
        c.executemany(
            "INSERT INTO images(id, study_id, sop_uid, source_path, rows, cols, view, spacing_row_mm, "
            "spacing_col_mm, spacing_source, photometric, bits_stored) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            [(i + 1, i // 5 + 1, f"1.2.4.{i}", str(dicom), 3000, 4000, ("AP", "LAT")[i % 2],
              0.139, 0.139, "pixel", "MONOCHROME2", 12) for i in range(n_images)])
        c.executemany("INSERT INTO thumbnails(image_id, png) VALUES (?, ?)",
                      [(i + 1, png) for i in range(n_images)])
    project.close()
    return root


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    from PySide6.QtCore import QElapsedTimer, QTimer

    from mskstudio.gui.app import make_app
    from mskstudio.gui.main_window import MainWindow

    tmp = Path(tempfile.mkdtemp(prefix="mskstudio-bench-"))
    t = time.perf_counter()
    dicom = write_big_dicom(tmp / "big.dcm")
    root = make_big_project(tmp / "big.mskproj", 50_000, dicom)
    print(f"setup: 50k-image project + 4000x3000 DICOM in {time.perf_counter() - t:.1f} s")

    app = make_app()

    def spin(pred, seconds=60.0):
        end = time.perf_counter() + seconds
        while not pred() and time.perf_counter() < end:
            app.processEvents()

    t0 = time.perf_counter()
    w = MainWindow(root, load_workspaces=False)
    w.resize(1600, 1000)
    w.show()
    model = w.browser.model
    spin(lambda: model.loaded_count > 0 and model.pending() == 0)
    w.browser.grid.viewport().repaint()
    print(f"open 50k-image project to first thumbnail grid: {time.perf_counter() - t0:.2f} s "
          f"({model.rowCount():,} items, {model.loaded_count} thumbnails loaded)")

    v = w.viewer
    spin(lambda: v.rad is not None)
    v.clear()
    t0 = time.perf_counter()
    w.open_image(2)
    thumb_s = time.perf_counter() - t0
    spin(lambda: v.rad is not None)
    v.view.viewport().repaint()
    print(f"open 4000x3000 image: thumbnail shown after {thumb_s * 1000:.0f} ms, "
          f"first full render after {time.perf_counter() - t0:.2f} s")

    for label, zoom in (("fit zoom", v.fit), ("1:1 zoom", v.actual_size)):
        zoom()
        app.processEvents()
        frames = []
        v.wl_drag(0, 0, "start")
        for k in range(120):
            f0 = time.perf_counter()
            v.wl_drag(3 * k, 2 * k, "move")
            v.view.viewport().repaint()
            frames.append((time.perf_counter() - f0) * 1000)
        v.wl_drag(0, 0, "finish")
        print(f"W/L drag frame time (4000x3000, {label}, pyramid level {v._lod}): "
              f"p50 {pct(frames, 50):.1f} ms, p95 {pct(frames, 95):.1f} ms")
    v.fit()

    # event-loop lag while a CPU-heavy job runs in the subprocess lane
    import gui_testjobs

    from mskstudio import jobrun

    jobrun.JOB_KINDS.update(gui_testjobs.KINDS)
    w.runner.subprocess_prefix = [sys.executable, str(HERE.parent / "gui" / "jobhost.py")]
    job = w.runner.submit("gui-test-busy", {"seconds": 6}, lane="heavy")
    spin(lambda: w.runner.handle(job).fraction > 0, 30)
    lags, clock = [], QElapsedTimer()
    timer = QTimer()
    timer.setInterval(10)
    clock.start()

    def tick():
        lags.append(max(0.0, clock.nsecsElapsed() / 1e6 - 10.0))
        clock.restart()

    timer.timeout.connect(tick)
    timer.start()
    spin(lambda: not w.runner.handle(job).active, 60)
    timer.stop()
    print(f"event-loop lag with a CPU-heavy subprocess job ({len(lags)} ticks of 10 ms): "
          f"p50 {pct(lags, 50):.1f} ms, p99 {pct(lags, 99):.1f} ms, max {max(lags):.1f} ms "
          f"(job {w.runner.handle(job).state}, {os.cpu_count()} cores)")
    w.close()


if __name__ == "__main__":
    main()

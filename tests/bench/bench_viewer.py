"""Viewer and shell figures (printed, not asserted): ``python tests/bench/bench_viewer.py``.

* open a 50 000-image project to the first thumbnail grid,
* open a 4000×3000 radiograph to the first full-resolution render,
* window/level drag frame time (p50/p95),
* event-loop lag (p99) while a CPU-heavy job runs in the subprocess lane.

    .venv/bin/python tests/bench/bench_viewer.py [--project DIR] [--no-lag]

``--project DIR`` keeps the 50k-image project (and the big DICOM) in DIR between runs
(building them takes ~10 s).  To compare with another version of the code, run this
same file with ``PYTHONPATH`` pointing at that version's tree (e.g. one made with
``git archive HEAD mskstudio | tar -x -C /tmp/base``), back to back on the same machine.

Waiting between steps sleeps between event-loop turns, as a real event loop idles
in ``poll``: a busy ``processEvents`` loop holds the GIL and starves the decode worker.
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


def print_worker_time(dicom: Path, repeats: int = 5) -> None:
    """The decode worker's share of the open, alone on this thread (median of ``repeats``):
    the stored-integer path where the code has it, else read_radiograph + prepare_display."""
    from mskstudio.gui.viewer import image_loader

    if hasattr(image_loader, "decode_for_display"):
        label, work = "stored integers", lambda: image_loader.decode_for_display(dicom)
    else:
        from mskstudio.io.dicom import read_radiograph

        label, work = "float modality", lambda: image_loader.prepare_display(read_radiograph(dicom))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        work()
        times.append(time.perf_counter() - t0)
    print(f"decode worker alone ({label}: read, display array, presets, pyramid; median of {repeats}): "
          f"{pct(times, 50) * 1000:.0f} ms (min {min(times) * 1000:.0f})")


def main() -> None:
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer

    import mskstudio
    from mskstudio.gui.app import make_app
    from mskstudio.gui.main_window import MainWindow

    ap = argparse.ArgumentParser()
    ap.add_argument("--project", type=Path, help="folder to keep the 50k-image project in between runs")
    ap.add_argument("--no-lag", action="store_true", help="skip the 6 s event-loop lag measurement")
    args = ap.parse_args()
    print(f"code: {Path(mskstudio.__file__).parent}, load average {os.getloadavg()[0]:.1f}, "
          f"{os.cpu_count()} cores")
    tmp = args.project or Path(tempfile.mkdtemp(prefix="mskstudio-bench-"))
    tmp.mkdir(parents=True, exist_ok=True)
    root, dicom = tmp / "big.mskproj", tmp / "big.dcm"
    if not root.exists():
        t = time.perf_counter()
        write_big_dicom(dicom)
        make_big_project(root, 50_000, dicom)
        print(f"setup: 50k-image project + 4000x3000 DICOM in {time.perf_counter() - t:.1f} s")

    app = make_app()

    def spin(pred, seconds=60.0):
        end = time.perf_counter() + seconds
        while not pred() and time.perf_counter() < end:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
            time.sleep(0.0005)

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
    thumbs, fulls, stalls = [], [], []
    for image_id in range(2, 8):  # the same 4000x3000 file behind each: the median of 6 opens
        v.clear()
        t0 = time.perf_counter()
        w.open_image(image_id)
        thumbs.append(time.perf_counter() - t0)
        stall = 0.0
        while v.rad is None and time.perf_counter() - t0 < 60:
            e0 = time.perf_counter()
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
            stall = max(stall, time.perf_counter() - e0)  # the longest the GUI thread was busy
            time.sleep(0.0005)
        v.view.viewport().repaint()
        fulls.append(time.perf_counter() - t0)
        stalls.append(stall)
    print(f"open 4000x3000 image (median of {len(fulls)}): thumbnail shown after {pct(thumbs, 50) * 1000:.0f} ms, "
          f"first full render after {pct(fulls, 50) * 1000:.0f} ms (min {min(fulls) * 1000:.0f}), "
          f"longest GUI-thread stall meanwhile {pct(stalls, 50) * 1000:.0f} ms")

    print_worker_time(dicom)

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

    if args.no_lag:
        w.close()
        return
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

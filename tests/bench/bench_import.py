"""Import throughput: header scan files/s; pixel import (decode + de-id + blob +
thumbnail + analysis cache) images/s for 2500×3000 uncompressed and JPEG-LS files
with 1 and 2 worker processes.

Run: .venv/bin/python tests/bench/bench_import.py [--n 40]
Targets (issue 4): header scan ≥ 1,000 files/s; import ≥ 40/s uncompressed and ≥ 6/s
JPEG-LS with 2 processes. Prints figures; asserts nothing about time.

Two more figures explain the uncompressed one: every imported file becomes a
durable (fsynced) blob of its own size, so the disk's fsynced write rate,
measured here in the same folder and run, caps the import at rate / file size;
and an import that references files in place (no blob, no de-identification)
shows what decoding, thumbnails and the analysis cache alone allow.  On a shared
machine all figures move with the other load: compare figures of one run.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, generate_uid

from mskstudio.io.dicom import scan_header
from mskstudio.io.importer import run_import
from mskstudio.io.phantoms import PhantomCase, render_case
from mskstudio.jobs import JobContext
from mskstudio.store import Project

SHAPE = (3000, 2500)


def write_archive(folder: Path, n: int, syntax: str) -> None:
    folder.mkdir(parents=True)
    img, _ = render_case(PhantomCase(region="knee", diagnosis="osteosarcoma"), SHAPE, 0)
    stored = (img * 4095).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.Modality, ds.PatientID, ds.PatientName = "DX", "BENCH-1", "BENCH^PATIENT"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Rows, ds.Columns = SHAPE
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.15, 0.15]
    ds.PixelData = stored.tobytes()
    if syntax == "jpegls":
        ds.compress(JPEGLSLossless, stored)
    for i in range(n):
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(folder / f"{i:05d}.dcm", enforce_file_format=True)


def bench_header_scan(folder: Path) -> float:
    files = sorted(folder.iterdir())
    for f in files[:3]:
        scan_header(f)  # warm the imports and the page cache
    t = time.perf_counter()
    for _ in range(5):
        for f in files:
            scan_header(f)
    return 5 * len(files) / (time.perf_counter() - t)


def cpu_seconds() -> tuple[float, float]:
    """(user, system) CPU seconds of this process and its reaped children (the workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + kids.ru_utime, own.ru_stime + kids.ru_stime


def bench_import(folder: Path, workers: int, tmp: Path, **options) -> tuple[float, str]:
    """(images/s, where the CPU went): cores busy on average tells CPU-bound (near the core
    count) from waiting on the disk, and the system share is the kernel's copying and writeback."""
    root = tmp / f"p-{folder.name}-{workers}.mskproj"
    with Project.create(root) as project:
        user0, sys0 = cpu_seconds()
        t = time.perf_counter()
        result = run_import(project, {"paths": [str(folder)], "workers": workers, **options}, JobContext.null())
        elapsed = time.perf_counter() - t
        user, system = (a - b for a, b in zip(cpu_seconds(), (user0, sys0), strict=True))
        assert result["imported"] == len(list(folder.iterdir())), result
    shutil.rmtree(root)
    n = result["imported"]
    cpu = (f"{(user + system) / elapsed:.2f} of {os.cpu_count()} cores busy; per image "
           f"{1000 * user / n:.0f} ms user + {1000 * system / n:.0f} ms system CPU")
    return n / elapsed, cpu


def bench_disk(tmp: Path, megabytes: int = 300) -> float:
    """fsynced sequential write rate in MB/s (what durable blobs need)."""
    block = os.urandom(1 << 20)
    path = tmp / "disk-probe.bin"
    t = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(megabytes):
            f.write(block)
        f.flush()
        os.fsync(f.fileno())
    rate = megabytes * (1 << 20) / 1e6 / (time.perf_counter() - t)
    path.unlink()
    return rate


def bench_deid_copy_stages(folder: Path, tmp: Path) -> str:
    """CPU ms per image of each step the de-identified copy adds to an in-place import (one
    process, the worker's own functions): de-identify, serialise, sha256, blob write (page
    cache + writeback start).  Process CPU time, not wall time: the machine may be shared."""
    import hashlib

    from mskstudio.io.deid import deidentify
    from mskstudio.io.dicom import read_dataset
    from mskstudio.io.dicom_bytes import dataset_file_chunks
    from mskstudio.store.blobs import BlobStore

    blobs = BlobStore(tmp / "stage-blobs")
    totals = dict.fromkeys(("de-identify", "serialise", "sha256", "write"), 0.0)
    files = sorted(folder.iterdir())
    for n, path in enumerate(files):
        data = path.read_bytes()
        ds = read_dataset(str(path), data=data)
        marks = [time.process_time()]
        clean, _ = deidentify(ds, b"bench-secret-32-bytes-long......")
        marks.append(time.process_time())
        chunks = dataset_file_chunks(clean)
        marks.append(time.process_time())
        digest = hashlib.sha256()
        for chunk in chunks:
            digest.update(chunk)
        marks.append(time.process_time())
        blobs._write_atomically(digest.hexdigest(), lambda f, c=chunks: f.writelines(c), durable=False)
        marks.append(time.process_time())
        if n:  # the first file warms the imports
            for key, a, b in zip(totals, marks, marks[1:], strict=False):
                totals[key] += b - a
    shutil.rmtree(blobs.root)
    n = max(len(files) - 1, 1)
    parts = ", ".join(f"{k} {1000 * v / n:.1f}" for k, v in totals.items())
    return f"{1000 * sum(totals.values()) / n:.1f} ms CPU per image ({parts})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=40, help="files per archive")
    parser.add_argument("--syntaxes", default="uncompressed,jpegls", help="comma-separated: uncompressed,jpegls")
    parser.add_argument("--workers", default="1,2", help="worker process counts to measure, comma-separated")
    args = parser.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",")]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"images {SHAPE[1]}×{SHAPE[0]} 12-bit")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for syntax in args.syntaxes.split(","):
            folder = tmp / syntax
            write_archive(folder, args.n, syntax)
            size_mb = sum(f.stat().st_size for f in folder.iterdir()) / args.n / 1e6
            print(f"\n{syntax}: {args.n} files, {size_mb:.1f} MB each")
            if syntax == "uncompressed":
                print(f"  header scan: {bench_header_scan(folder):,.0f} files/s (target ≥ 1,000)")
                disk = bench_disk(tmp)
                print(f"  disk, fsynced writes: {disk:,.0f} MB/s -> at most {disk / size_mb:.1f} durable "
                      f"blobs/s of {size_mb:.1f} MB")
                print(f"  de-identified copy, one process: {bench_deid_copy_stages(folder, tmp)}")
            target = 40 if syntax == "uncompressed" else 6
            for workers in worker_counts:
                rate, cpu = bench_import(folder, workers, tmp)
                print(f"  import, {workers} process(es): {rate:.1f} images/s (target ≥ {target}/s with 2); {cpu}")
            if syntax == "uncompressed":
                for workers in worker_counts:
                    rate, cpu = bench_import(folder, workers, tmp, copy=False, deidentify=False)
                    print(f"  import in place (no blob, no de-id), {workers} process(es): {rate:.1f} images/s; {cpu}")


if __name__ == "__main__":
    main()

"""Importer: real DICOM files in, bad files recorded, resumable, de-identified."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from mskstudio.io.analysis import load_analysis
from mskstudio.io.importer import run_import
from mskstudio.jobrun import submit_and_run
from mskstudio.jobs import JobContext
from mskstudio.store import Project

GOOD = ("CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm",
        "JPEG2000.dcm", "rtdose.dcm")


def _testfile(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not in this pydicom wheel")
    return Path(path)


@pytest.fixture
def good_folder(tmp_path) -> Path:
    folder = tmp_path / "archive" / "good"
    folder.mkdir(parents=True)
    for n, name in enumerate(GOOD):
        # Several of pydicom's files are one image in different syntaxes with the same
        # SOPInstanceUID; give each its own so none is (rightly) skipped as a duplicate.
        ds = pydicom.dcmread(_testfile(name))
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.9{n}"
        ds.save_as(folder / name.replace(".dcm", ""))  # no suffix on purpose
    return folder.parent


def _bad_files(folder: Path) -> dict[str, str]:
    """Each bad input and the words its recorded reason must contain."""
    folder.mkdir(parents=True, exist_ok=True)
    real = _testfile("CT_small.dcm").read_bytes()
    (folder / "empty.dcm").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    (folder / "truncated.dcm").write_bytes(real[: len(real) // 2])
    (folder / "wrong_magic.dcm").write_bytes(b"\0" * 128 + b"DICX" + real[132:])
    ds = pydicom.dcmread(_testfile("CT_small.dcm"))
    del ds.PixelData
    ds.save_as(folder / "nopixels.dcm")
    ds = pydicom.dcmread(_testfile("CT_small.dcm"))
    from pydicom.encaps import encapsulate

    ds.PixelData = encapsulate([ds.PixelData])
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG-2: no image decoder
    ds.save_as(folder / "unsupported.dcm", implicit_vr=False, little_endian=True)
    with open(folder / "sparse3g.dcm", "wb") as f:  # a huge sparse file: sniffed, never read whole
        f.truncate(3 << 30)
    os.symlink(folder, folder / "loop")  # a directory symlink loop
    return {"empty.dcm": "0-byte", "notes.txt": "not a DICOM", "truncated.dcm": "truncat",
            "wrong_magic.dcm": "not a DICOM", "nopixels.dcm": "no pixel data",
            "unsupported.dcm": "transfer syntax", "sparse3g.dcm": ""}


def test_import_real_files(new_project, good_folder):
    result = submit_and_run(new_project, "import", {"paths": [str(good_folder)], "workers": 1})
    assert result["imported"] == len(GOOD)
    assert result["failed"] == 0
    frames = pydicom.dcmread(_testfile("rtdose.dcm"), stop_before_pixels=True).NumberOfFrames
    assert new_project.images.count() == len(GOOD) - 1 + frames  # each frame addressable
    for image_id in new_project.images.ids():
        row = new_project.images.record(image_id)
        assert new_project.images.thumbnail(image_id)[:4] == b"\x89PNG"
        analysis = load_analysis(new_project, image_id)
        assert max(analysis.shape) <= 512 and analysis.min() >= 0.0 and analysis.max() <= 1.0
        assert row.pseudonym.startswith("P-")
        assert new_project.images.dicom_path(image_id).exists()
    audit = [r["action"] for r in new_project.audit_log()]
    assert "import" in audit


def test_bad_files_are_recorded_and_import_goes_on(new_project, good_folder):
    expected = _bad_files(good_folder / "bad")
    job = new_project.jobs.submit("import", {"paths": [str(good_folder)], "workers": 2})
    from mskstudio.jobrun import run_job

    result = run_job(new_project, job)
    assert result["imported"] == len(GOOD)
    reasons = {Path(r["path"]).name: r["reason"] for r in new_project.db.query(
        "SELECT path, reason FROM import_failures WHERE job_id = ?", (job,))}
    for name, words in expected.items():
        assert name in reasons, f"{name} was not recorded"
        assert words.lower() in reasons[name].lower(), (name, reasons[name])
    assert result["non_dicom"] + result["failed"] == len(expected)
    assert new_project.db.scalar("PRAGMA integrity_check") == "ok"
    assert new_project.jobs.get(job)["status"] == "done"


def test_reimport_adds_nothing_and_dedupes(new_project, good_folder):
    first = run_import(new_project, {"paths": [str(good_folder)], "workers": 1}, JobContext.null())
    n = new_project.images.count()
    again = run_import(new_project, {"paths": [str(good_folder), str(good_folder / "good" / "CT_small")],
                                     "workers": 1}, JobContext.null())
    assert again["imported"] == 0 and again["duplicates"] == first["imported"]
    same_uid = good_folder / "same_uid"
    same_uid.mkdir()
    shutil.copy(_testfile("MR_small.dcm"), same_uid / "a.dcm")
    shutil.copy(_testfile("MR_small_RLE.dcm"), same_uid / "b.dcm")  # same SOPInstanceUID, other syntax
    third = run_import(new_project, {"paths": [str(same_uid)], "workers": 1}, JobContext.null())
    assert (third["imported"], third["duplicates"]) == (1, 1)
    assert new_project.images.count() == n + 1


def test_deidentified_blobs_and_database_hold_no_phi(new_project, tmp_path):
    ds = pydicom.dcmread(_testfile("CT_small.dcm"))
    phi = {"PatientName": "SECRETARY^ZELDA", "PatientID": "MRN-77-1234", "PatientBirthDate": "19610304",
           "InstitutionName": "St Elsewhere Hospital", "ReferringPhysicianName": "HOUSE^GREGORY",
           "AccessionNumber": "ACC99887766", "PatientAddress": "12 Quiet Lane Springfield"}
    for k, v in phi.items():
        setattr(ds, k, v)
    ds.ImageComments = "seen by SECRETARY^ZELDA"
    src = tmp_path / "in"
    src.mkdir()
    ds.save_as(src / "phi.dcm")
    run_import(new_project, {"paths": [str(src)], "workers": 1}, JobContext.null())
    new_project.close()
    haystack = b"".join(p.read_bytes() for p in new_project.root.rglob("*") if p.is_file())
    for value in list(phi.values()) + ["SECRETARY", "Elsewhere"]:
        assert value.encode() not in haystack, f"{value} leaked into the project"


def test_keep_map_is_opt_in(new_project, good_folder):
    run_import(new_project, {"paths": [str(good_folder)], "workers": 1}, JobContext.null())
    assert new_project.db.scalar("SELECT COUNT(*) FROM patients WHERE original_id IS NOT NULL") == 0


def test_in_place_requires_no_deid(new_project, good_folder):
    with pytest.raises(ValueError, match="deidentify"):
        run_import(new_project, {"paths": [str(good_folder)], "copy": False}, JobContext.null())
    result = run_import(new_project, {"paths": [str(good_folder)], "copy": False, "deidentify": False,
                                      "workers": 1}, JobContext.null())
    assert result["imported"] == len(GOOD)
    assert all(str(new_project.images.dicom_path(i)).startswith(str(good_folder))
               for i in new_project.images.ids())


def test_kill_mid_import_then_rerun_completes_without_duplicates(tmp_path, good_folder):
    root = tmp_path / "p.mskproj"
    Project.create(root).close()
    many = tmp_path / "many"
    many.mkdir()
    template = pydicom.dcmread(_testfile("MR_small.dcm"))
    for i in range(40):
        template.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{i + 1}"
        template.save_as(many / f"{i:03d}.dcm")
    script = textwrap.dedent(f"""
        from mskstudio.store import Project
        from mskstudio.io.importer import run_import
        from mskstudio.jobs import JobContext
        import time, mskstudio.io.importer as imp
        imp.COMMIT_EVERY = 3  # several committed batches before the kill
        slow = imp._commit_batch
        def slowed(*a, **k):
            slow(*a, **k); print("stored", flush=True); time.sleep(0.3)
        imp._commit_batch = slowed
        p = Project.open({str(root)!r})
        run_import(p, {{"paths": [{str(many)!r}], "workers": 1}}, JobContext.null())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    for _ in range(3):
        proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    with Project.open(root) as project:
        partial = project.images.count()
        assert 0 < partial < 40
        assert project.db.scalar("PRAGMA integrity_check") == "ok"
        result = run_import(project, {"paths": [str(many)], "workers": 1}, JobContext.null())
        assert result["imported"] == 40 - partial
        assert project.images.count() == 40
        assert project.db.scalar("SELECT COUNT(DISTINCT sop_uid) FROM images") == 40


def test_cancel_stops_import(new_project, tmp_path):
    from mskstudio.jobs import Cancelled, CancelToken

    many = tmp_path / "many"
    many.mkdir()
    template = pydicom.dcmread(_testfile("MR_small.dcm"))
    for i in range(30):
        template.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{100 + i}"
        template.save_as(many / f"{i:03d}.dcm")
    token = CancelToken()

    class CancelAfterFive:
        n = 0

        def on_progress(self, fraction, message, eta):
            self.n += 1
            if self.n == 5:
                token.cancel()

        def on_metric(self, *a):
            pass

        def on_log(self, *a):
            pass

    with pytest.raises(Cancelled):
        submit_and_run(new_project, "import", {"paths": [str(many)], "workers": 1},
                       sink=CancelAfterFive(), token=token)
    assert new_project.images.count() < 30
    assert new_project.db.scalar("SELECT status FROM jobs") == "cancelled"


# ---------------------------------------------------------------- blob writing
@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
                                  "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_padded.dcm"])
def test_blob_chunks_are_the_bytes_pydicom_writes(name):
    import io

    from mskstudio.io.deid import deidentify
    from mskstudio.io.dicom_bytes import dataset_file_chunks

    clean, _ = deidentify(pydicom.dcmread(_testfile(name)), b"secret")
    expected = io.BytesIO()
    clean.save_as(expected, enforce_file_format=True)
    chunks = dataset_file_chunks(clean)
    assert b"".join(chunks) == expected.getvalue()
    if "PixelData" in clean:  # the pixel data is passed through, not copied
        assert any(chunk is clean.PixelData for chunk in chunks)


def test_blob_chunks_odd_length_and_fallbacks():
    import copy
    import io

    from mskstudio.io.dicom_bytes import dataset_file_chunks

    ds = pydicom.dcmread(_testfile("CT_small.dcm"))
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.Rows, ds.Columns = 8, 8, 7, 3, 3
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(range(9))  # odd length: padded to even on write
    plain = copy.deepcopy(ds)
    ds.DataSetTrailingPadding = b"\0\0"  # an element after Pixel Data: pydicom writes it all
    for variant in (plain, ds):
        expected = io.BytesIO()
        variant.save_as(expected, enforce_file_format=True)
        assert b"".join(dataset_file_chunks(variant)) == expected.getvalue()


def test_batched_blobs_match_the_blob_store(tmp_path):
    import hashlib

    from mskstudio.store.blobs import BlobStore

    store = BlobStore(tmp_path / "blobs")
    chunks = [b"head", os.urandom(1 << 20), b"tail"]
    sha = store.put_chunks(chunks, durable=False)
    data = b"".join(chunks)
    assert sha == hashlib.sha256(data).hexdigest() == store.put_bytes(data)  # same name, same file
    assert store.read_bytes(sha) == data
    assert store.put_chunks([data], durable=False) == sha  # content already there: nothing rewritten
    store.sync({sha})
    assert store.orphans({sha}) == [] and not list(store.path(sha).parent.glob(".incoming-*"))


def test_truncated_analysis_cache_is_rebuilt_equal_to_the_imported_one(phantom_project):
    image_id = phantom_project.images.ids()[0]
    imported = load_analysis(phantom_project, image_id)
    path = phantom_project.images.analysis_path(image_id)
    path.write_bytes(path.read_bytes()[:100])  # a power cut mid-write of derived data
    rebuilt = load_analysis(phantom_project, image_id)
    np.testing.assert_array_equal(rebuilt, imported)
    path.unlink()
    np.testing.assert_array_equal(load_analysis(phantom_project, image_id), imported)


_MALLOC_PROBE = """
import ctypes, ctypes.util, sys
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                               "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
if sys.argv[1] == "keep":
    from mskstudio.io.import_worker import keep_freed_memory
    assert keep_freed_memory()
before = libc.mallinfo2().hblkhd
libc.malloc(20 << 20)  # one file's buffer
print(libc.mallinfo2().hblkhd - before)  # bytes glibc served by mmap (zero-filled anew each file)
"""


def test_worker_processes_keep_freed_memory_for_the_next_file():
    """With the worker's settings a file-sized buffer comes from the reusable heap, not from a
    fresh mmap; a plain process (the control) mmaps it."""
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt and mallinfo2 are glibc's")

    def mmapped(mode):
        r = subprocess.run([sys.executable, "-c", _MALLOC_PROBE, mode], capture_output=True, text=True,
                           cwd=Path(__file__).resolve().parents[2])
        if "mallinfo2" in r.stderr:
            pytest.skip("glibc older than 2.33 (no mallinfo2)")
        assert r.returncode == 0, r.stderr
        return int(r.stdout)

    assert mmapped("plain") >= 20 << 20
    assert mmapped("keep") == 0

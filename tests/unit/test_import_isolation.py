"""A damaged file costs one file: decoder panics, crashes and hangs are contained."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from mskstudio.io.import_pool import isolated_results
from mskstudio.io.importer import run_import
from mskstudio.jobs import JobContext


def _damaged_rle(path):
    """MR_small_RLE.dcm with one byte of the first RLE segment header changed: pylibjpeg-rle's
    Rust decoder panics (index out of bounds), raising pyo3's PanicException, a BaseException."""
    source = get_testdata_file("MR_small_RLE.dcm", download=False)
    data = bytearray(Path(source).read_bytes())
    offset = data.find(pydicom.dcmread(source).PixelData[:32])
    data[offset + 28] = 75
    path.write_bytes(bytes(data))
    return path


def test_the_damaged_rle_file_really_panics(tmp_path):
    with pytest.raises(BaseException) as info:
        _ = pydicom.dcmread(io.BytesIO(_damaged_rle(tmp_path / "bad.dcm").read_bytes())).pixel_array
    assert not isinstance(info.value, Exception), "no longer a BaseException: the test proves less"


def _good_files(folder, n):
    folder.mkdir()
    template = pydicom.dcmread(get_testdata_file("MR_small.dcm", download=False))
    for i in range(n):
        template.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.77{i}"
        template.save_as(folder / f"{i:03d}.dcm")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_decoder_panic_costs_one_file_not_the_import(new_project, tmp_path, workers):
    folder = tmp_path / "archive"
    _good_files(folder, 10)
    _damaged_rle(folder / "005b-damaged.dcm")
    result = run_import(new_project, {"paths": [str(folder)], "workers": workers}, JobContext.null())
    assert result["imported"] == 10 and result["failed"] == 1
    assert len(new_project.images.ids()) == 10
    [(path, reason)] = result["failures"]
    assert path.endswith("005b-damaged.dcm") and "panic" in reason
    again = run_import(new_project, {"paths": [str(folder)], "workers": workers}, JobContext.null())
    assert again["imported"] == 0 and again["duplicates"] == 10 and again["failed"] == 1


def _init_args(tmp_path):
    return (b"k" * 32, str(tmp_path / "blobs"), str(tmp_path), set(), None)


def test_a_crashing_or_hanging_decoder_costs_one_file_each(tmp_path):
    from import_faults import faulty_decoder

    names = ["a", "segv-1", "b", "hang-2", "c", "abort-3", "unpicklable-4", "d", "e"]
    files = [str(tmp_path / n) for n in names]
    results = list(isolated_results(files, _init_args(tmp_path), 2, lambda: None, time_limit_s=3.0,
                                    target=faulty_decoder))
    by_name = {r["path"].rsplit("/", 1)[1]: r for r in results}
    assert sorted(by_name) == sorted(names) and len(results) == len(names)  # every file once
    assert "SIGSEGV" in by_name["segv-1"]["reason"] and by_name["segv-1"]["status"] == "failed"
    assert "SIGABRT" in by_name["abort-3"]["reason"]
    assert "longer than 3 s" in by_name["hang-2"]["reason"]
    assert "could not be sent back" in by_name["unpicklable-4"]["reason"]
    assert all(by_name[n]["status"] == "ok" for n in "abcde")


def test_workers_end_when_the_import_is_cancelled(tmp_path):
    from import_faults import faulty_decoder

    class Stop(Exception):
        pass

    calls = []

    def check():
        calls.append(1)
        if len(calls) > 2:
            raise Stop

    files = [str(tmp_path / f"hang-{i}") for i in range(4)]
    gen = isolated_results(files, _init_args(tmp_path), 2, check, time_limit_s=60, target=faulty_decoder)
    with pytest.raises(Stop):
        list(gen)
    import multiprocessing

    assert not [p for p in multiprocessing.active_children() if p.is_alive()]


def test_results_are_stored_in_file_order_whatever_order_workers_finish():
    from mskstudio.io.importer import in_file_order

    files = ["a", "b", "c", "d", "b"]
    finished = [{"path": "d", "n": 3}, {"path": "b", "n": 1}, {"path": "c", "n": 2},
                {"path": "b", "n": 4}, {"path": "a", "n": 0}]
    assert [r["n"] for r in in_file_order(files, finished)] == [0, 1, 2, 3, 4]
    # a result that never comes back does not swallow the ones after it
    assert [r["path"] for r in in_file_order(["a", "x", "c"], [{"path": "c"}, {"path": "a"}])] == ["a", "c"]


def test_two_worker_imports_of_one_archive_give_the_same_row_order(tmp_path):
    from mskstudio.store import Project

    folder = tmp_path / "archive"
    _good_files(folder, 12)
    orders = []
    for name in ("one", "two"):
        project = Project.create(tmp_path / f"{name}.mskproj")
        try:
            run_import(project, {"paths": [str(folder)], "workers": 2, "copy": False,
                                  "deidentify": False}, JobContext.null())
            rows = project.db.query("SELECT source_path FROM images ORDER BY id")
            orders.append([Path(r["source_path"]).name for r in rows])
        finally:
            project.close()
    assert orders[0] == orders[1] == sorted(orders[0]) and len(orders[0]) == 12

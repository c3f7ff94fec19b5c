"""A DICOMDIR archive (as burned on CDs): the files it names are imported once."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.fileset import FileSet

from mskstudio.io.importer import iter_candidate_files, run_import
from mskstudio.jobs import JobContext


def test_dicomdir_files_imported_once(new_project, tmp_path):
    fs = FileSet()
    for n, name in enumerate(("CT_small.dcm", "MR_small.dcm")):
        ds = pydicom.dcmread(get_testdata_file(name, download=False))
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.77{n}"
        fs.add(ds)
    cd = tmp_path / "cd"
    fs.write(cd)
    assert (cd / "DICOMDIR").exists()
    listed = [p for p, problem in iter_candidate_files([str(cd)]) if problem is None]
    assert len(listed) == 2  # the two images once each; the DICOMDIR itself is not an image
    via_index = [p for p, problem in iter_candidate_files([str(cd / "DICOMDIR")]) if problem is None]
    assert sorted(via_index) == sorted(listed)
    result = run_import(new_project, {"paths": [str(cd)], "workers": 1}, JobContext.null())
    assert (result["imported"], result["failed"], result["non_dicom"]) == (2, 0, 0)
    assert all(Path(p).name != "DICOMDIR" for p, _ in result["failures"])

"""De-identification end to end: no identifying value written into the phantom files
(names, IDs, birth dates, addresses, institutions, physicians, accession numbers,
free-text comments) appears anywhere in the imported project's bytes."""

from __future__ import annotations

from pathlib import Path

import pydicom

PHI_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "PatientAddress", "InstitutionName",
                "InstitutionAddress", "ReferringPhysicianName", "OperatorsName", "AccessionNumber",
                "OtherPatientIDs", "ImageComments", "StudyDescription")


def test_no_phantom_phi_in_project(phantom_archive, phantom_project_path):
    values: set[str] = set()
    for f in (phantom_archive.parent / "dicom").rglob("*"):
        if f.is_file():
            ds = pydicom.dcmread(f, stop_before_pixels=True)
            for kw in PHI_KEYWORDS:
                v = str(ds.get(kw, "") or "").strip()
                if len(v) >= 6:  # short values (e.g. "M") would match by chance
                    values.add(v)
    assert len(values) > 20  # the phantoms do carry identifying data to remove
    haystack = b"".join(p.read_bytes() for p in Path(phantom_project_path).rglob("*") if p.is_file())
    leaked = sorted(v for v in values if v.encode() in haystack)
    assert leaked == []

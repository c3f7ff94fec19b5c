"""Enhanced multi-frame files: spacing, rescale and windows from the functional groups,
per frame, in the readers, the header scan, the import and the de-identified blob."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from mskstudio.io.dicom import read_dataset, read_radiograph, read_stored_frame, scan_header
from mskstudio.io.dicom_attributes import frame_attributes
from mskstudio.jobs import JobContext

# (slope, intercept, window centre, window width) of each frame
FRAMES = [(1.0, 0.0, 150.0, 100.0), (2.0, -100.0, 400.0, 300.0), (0.5, 10.0, 160.0, 80.0)]
SPACING = (0.2, 0.25)


def _item(**macros) -> Dataset:
    item = Dataset()
    for name, values in macros.items():
        inner = Dataset()
        for keyword, value in values.items():
            setattr(inner, keyword, value)
        setattr(item, name, [inner])
    return item


@pytest.fixture
def enhanced_file(tmp_path):
    rows, cols = 40, 30
    stored = np.stack([(np.arange(rows * cols).reshape(rows, cols) % 1000 + 10 * k).astype(np.uint16)
                       for k in range(len(FRAMES))])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.12.1.1"  # Enhanced XA
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("enhanced", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID, ds.PatientName = "XA", "ENH-1", "ENHANCED^PATIENT"
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, len(FRAMES)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SharedFunctionalGroupsSequence = [_item(PixelMeasuresSequence={"PixelSpacing": list(SPACING)})]
    ds.PerFrameFunctionalGroupsSequence = [
        _item(PixelValueTransformationSequence={"RescaleSlope": s, "RescaleIntercept": i, "RescaleType": "US"},
              FrameVOILUTSequence={"WindowCenter": c, "WindowWidth": w})
        for s, i, c, w in FRAMES]
    ds.PixelData = stored.tobytes()
    folder = tmp_path / "enhanced"
    folder.mkdir()
    path = folder / "enhanced.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path, stored


def test_each_frame_reads_its_own_rescale_window_and_the_shared_spacing(enhanced_file):
    path, stored = enhanced_file
    ds = read_dataset(path)
    for k, (slope, intercept, centre, width) in enumerate(FRAMES):
        rad = read_radiograph(ds, frame=k)
        np.testing.assert_allclose(rad.modality, stored[k] * slope + intercept, rtol=1e-6)
        assert (rad.windows[0].center, rad.windows[0].width) == (centre, width)
        assert rad.spacing_mm == SPACING and rad.spacing_source == "pixel"
        frame = read_stored_frame(ds, k)
        assert (frame.slope, frame.intercept) == (slope, intercept)
        assert frame.windows[0].center == centre


def test_header_scan_sees_the_shared_groups(enhanced_file):
    header = scan_header(enhanced_file[0])
    assert header.n_frames == len(FRAMES)
    assert header.spacing_mm == SPACING          # shared Pixel Measures; no top-level PixelSpacing
    assert header.windows == []                  # per-frame windows are read with each frame


def test_classic_files_are_read_as_before():
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm", download=False))
    assert frame_attributes(ds, 0) is ds


def test_import_stores_every_frame_with_its_own_attributes(enhanced_file, new_project):
    from mskstudio.io.importer import run_import

    path, stored = enhanced_file
    result = run_import(new_project, {"paths": [str(path.parent)], "workers": 1}, JobContext.null())
    assert result["imported"] == 1
    rows = sorted((new_project.images.record(i) for i in new_project.images.ids()), key=lambda r: r.frame)
    assert [r.frame for r in rows] == list(range(len(FRAMES)))
    for row, (slope, intercept, centre, width) in zip(rows, FRAMES, strict=True):
        assert (row.rescale_slope, row.rescale_intercept) == (slope, intercept)
        assert (row.window_center, row.window_width) == (centre, width)
        assert (row.spacing_row_mm, row.spacing_col_mm) == SPACING
    # The de-identified blob keeps the groups: the viewer reads the same per-frame values.
    blob = read_dataset(new_project.images.dicom_path(rows[1].id))
    assert "ENHANCED" not in str(blob.get("PatientName"))
    rad = read_radiograph(blob, frame=1)
    np.testing.assert_allclose(rad.modality, stored[1] * FRAMES[1][0] + FRAMES[1][1], rtol=1e-6)
    assert rad.windows[0].center == FRAMES[1][2]

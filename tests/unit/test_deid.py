"""De-identification: keep-list profile, keyed pseudonyms, pixels untouched."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from mskstudio.io.deid import deidentify, pseudo_uid, pseudonym
from mskstudio.io.dicom import read_radiograph

SECRET = b"project-secret-1"
TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"

PHI = [
    "SMITH^JANE", "PID-778899", "19600315", "42 Elm Street", "555-0199", "OTHER-ID-1",
    "St Elsewhere Hospital", "1 Hospital Road", "DR^REFERRER", "DR^PERFORMER", "OPERATOR^OLLIE",
    "ACC-123456", "image comment secret", "study comment secret", "history secret", "SN-0042",
    "nested secret name", "private secret", "STATION-7", "STUDYID-99",
]
STUDY_UID, SERIES_UID, SOP_UID = "1.2.3.4.100", "1.2.3.4.200", "1.2.3.4.300"
REF_UID = "1.2.3.4.999"


def phi_dataset(transfer_syntax=ExplicitVRLittleEndian) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = SOP_UID
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = SOP_UID, STUDY_UID, SERIES_UID
    ds.FrameOfReferenceUID = "1.2.3.4.400"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = "SMITH^JANE", "PID-778899", "19600315"
    ds.PatientSex, ds.PatientWeight = "F", 61
    ds.PatientAddress, ds.PatientTelephoneNumbers = "42 Elm Street", "555-0199"
    ds.OtherPatientIDsSequence = Sequence([Dataset()])
    ds.OtherPatientIDsSequence[0].PatientID = "OTHER-ID-1"
    ds.InstitutionName, ds.InstitutionAddress = "St Elsewhere Hospital", "1 Hospital Road"
    ds.ReferringPhysicianName, ds.PerformingPhysicianName = "DR^REFERRER", "DR^PERFORMER"
    ds.OperatorsName, ds.AccessionNumber, ds.StudyID = "OPERATOR^OLLIE", "ACC-123456", "STUDYID-99"
    ds.ImageComments, ds.StudyComments = "image comment secret", "study comment secret"
    ds.AdditionalPatientHistory, ds.DeviceSerialNumber, ds.StationName = "history secret", "SN-0042", "STATION-7"
    ds.StudyDate, ds.AcquisitionDate, ds.Modality = "20200610", "20200610", "DX"
    ds.BodyPartExamined, ds.ViewPosition, ds.BurnedInAnnotation = "HAND", "PA", "NO"
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1.1", REF_UID
    ref.PersonName = "nested secret name"  # a PN hidden inside a kept sequence
    ds.ReferencedImageSequence = Sequence([ref])
    ds.RequestAttributesSequence = Sequence([Dataset()])  # unknown-to-keep-list sequence
    ds.RequestAttributesSequence[0].RequestedProcedureID = "ACC-123456"
    block = ds.private_block(0x0011, "ACME PRIVATE", create=True)
    block.add_new(0x01, "LO", "private secret")
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.Rows, ds.Columns = 1, "MONOCHROME2", 32, 24
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing, ds.WindowCenter, ds.WindowWidth = [0.2, 0.2], 1000, 2000
    ds.PixelData = np.arange(32 * 24, dtype=np.uint16).reshape(32, 24).tobytes()
    if transfer_syntax != ExplicitVRLittleEndian:
        ds.compress(transfer_syntax, encoding_plugin="pydicom")
    return ds


@pytest.fixture(params=[ExplicitVRLittleEndian, RLELossless], ids=["native", "rle"])
def deided(request, tmp_path):
    src = phi_dataset(request.param)
    out, report = deidentify(src, SECRET)
    path = tmp_path / "deid.dcm"
    out.save_as(path, enforce_file_format=True)
    return src, out, report, path


def test_no_phi_in_saved_bytes(deided):
    _, _, _, path = deided
    data = path.read_bytes()
    for s in PHI:
        assert s.encode() not in data, s
    for uid in (STUDY_UID, SERIES_UID, SOP_UID, REF_UID, "1.2.3.4.400"):
        assert uid.encode() not in data, uid


def test_profile_markers_and_kept_fields(deided):
    _, out, report, path = deided
    back = pydicom.dcmread(path)
    assert back.PatientIdentityRemoved == "YES"
    assert {c.CodeValue for c in back.DeidentificationMethodCodeSequence} == {"113100", "113107", "113108"}
    # Modified Dates (the default): shifted by whole weeks, 1 to 10 years back; weekday kept.
    shifted = datetime.strptime(back.StudyDate, "%Y%m%d")
    days = (datetime(2020, 6, 10) - shifted).days
    assert 364 <= days <= 3640 and days % 7 == 0 and back.AcquisitionDate == back.StudyDate
    assert "Modified Dates" in "".join(back.DeidentificationMethod)
    assert back.PatientSex == "F" and float(back.PatientWeight) == 61
    assert back.PatientAge == "060Y"  # 1960-03-15 -> 2020-06-10
    assert back.BurnedInAnnotation == "NO" and back.BodyPartExamined == "HAND"
    assert re.fullmatch(r"C-[0-9a-f]{6}", back.InstitutionName)
    assert "AccessionNumber" not in back or back.AccessionNumber == ""
    assert not any(e.tag.is_private for e in back)
    assert "RequestAttributesSequence" not in back and "OtherPatientIDsSequence" not in back
    assert "PersonName" not in back.ReferencedImageSequence[0]
    for kw in ("PatientAddress", "ImageComments", "DeviceSerialNumber", "OperatorsName", "PatientBirthDate"):
        assert not back.get(kw), kw
    assert any("private" in r for r in report.removed)
    assert "PatientID" in report.replaced and "PatientAge" in report.added


def test_uids_valid_and_consistent(deided):
    src, out, _, path = deided
    back = pydicom.dcmread(path)
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
        uid = str(back[kw].value)
        assert re.fullmatch(r"2\.25\.(0|[1-9][0-9]*)", uid) and len(uid) <= 64
        assert uid == pseudo_uid(SECRET, str(src[kw].value))
    assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID
    assert back.ReferencedImageSequence[0].ReferencedSOPInstanceUID == pseudo_uid(SECRET, REF_UID)
    again, _ = deidentify(phi_dataset(), SECRET)
    assert again.StudyInstanceUID == out.StudyInstanceUID


def test_pixels_identical(deided):
    src, out, _, path = deided
    back = pydicom.dcmread(path)
    assert back.PixelData == src.PixelData  # same bytes, still compressed if it was
    assert back.file_meta.TransferSyntaxUID == src.file_meta.TransferSyntaxUID
    np.testing.assert_array_equal(read_radiograph(path).modality, read_radiograph(src).modality)


def test_pseudonyms_keyed_and_stable():
    assert pseudonym(SECRET, "PID-1") == pseudonym(SECRET, "PID-1")
    assert pseudonym(SECRET, "PID-1") != pseudonym(b"other-secret", "PID-1")
    assert pseudonym(SECRET, "PID-1") != pseudonym(SECRET, "PID-2")
    assert re.fullmatch(r"P-[0-9a-f]{12}", pseudonym(SECRET, "PID-1"))
    out, _ = deidentify(phi_dataset(), SECRET)
    assert out.PatientID == out.PatientName == pseudonym(SECRET, "PID-778899")
    assert pseudo_uid(SECRET, "1.2.3") != pseudo_uid(b"x", "1.2.3")


def test_input_not_modified():
    src = phi_dataset()
    deidentify(src, SECRET)
    assert src.PatientName == "SMITH^JANE" and src.StudyInstanceUID == STUDY_UID


@pytest.mark.parametrize("name", ["MR_small_jp2klossless.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm"])
def test_real_files_roundtrip(name, tmp_path):
    src_path = TEST_FILES / name
    src = pydicom.dcmread(src_path)
    out, _ = deidentify(src, SECRET)
    path = tmp_path / name
    out.save_as(path, enforce_file_format=True)
    np.testing.assert_array_equal(read_radiograph(path).modality, read_radiograph(src_path).modality)
    if src.get("PatientName"):
        assert str(src.PatientName).encode() not in path.read_bytes()

"""De-identification: Modified Dates (the default) and Full Dates, PHI in non-UTF-8
character sets (checked in the written bytes), and a walk over every identifying
attribute of the DICOM dictionary.

The Annex E walk: pydicom ships no copy of PS3.15 Table E.1-1, so the list is derived
from pydicom's data dictionary: every PN, DA and DT attribute, and every attribute whose
keyword names an identifier, a person, an address, a comment, an institution, a device
or a UID (``ANNEX_E_WORDS``).  That is a superset of the table's rows (it has about 600
attributes; this walks well over 1,000), so an attribute the table adds later is most
likely already here.
"""

from __future__ import annotations

import re
from datetime import date, datetime

import pydicom
import pytest
from pydicom.charset import encode_string
from pydicom.datadict import DicomDictionary, keyword_for_tag
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from mskstudio.io.deid import KEEP, UID_REPLACE, date_offset_days, deidentify, shift_date

SECRET = b"d" * 32


def _base(pid="PID-1", **kw) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1.1", f"1.2.3.{abs(hash(pid)) % 999}"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.3.100", "1.2.3.101"
    ds.PatientID, ds.Modality = pid, "DX"
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def _days(a: str, b: str) -> int:
    return (datetime.strptime(a, "%Y%m%d") - datetime.strptime(b, "%Y%m%d")).days


def test_dates_shift_per_patient_and_intervals_survive():
    first, _ = deidentify(_base("A", StudyDate="20200110", AcquisitionDate="20200110"), SECRET)
    later, _ = deidentify(_base("A", StudyDate="20210305", ContentDate="20210306"), SECRET)
    other, _ = deidentify(_base("B", StudyDate="20200110"), SECRET)
    assert first.StudyDate != "20200110" and first.AcquisitionDate == first.StudyDate
    assert _days(later.StudyDate, first.StudyDate) == _days("20210305", "20200110")  # interval kept
    assert _days(later.ContentDate, later.StudyDate) == 1
    assert other.StudyDate != first.StudyDate  # another patient, another offset
    assert datetime.strptime(first.StudyDate, "%Y%m%d").weekday() == date(2020, 1, 10).weekday()
    again, _ = deidentify(_base("A", StudyDate="20200110"), SECRET)
    assert again.StudyDate == first.StudyDate  # the same in every import
    elsewhere, _ = deidentify(_base("A", StudyDate="20200110"), b"e" * 32)
    assert elsewhere.StudyDate != first.StudyDate  # keyed on the project secret


def test_datetimes_ranges_and_partial_dates():
    days = date_offset_days(SECRET, "A")
    out, report = deidentify(_base("A", AcquisitionDateTime="20200110083015.25+0100", SeriesDate="2020",
                                    StudyTime="083015"), SECRET)
    assert out.AcquisitionDateTime == shift_date("20200110", days) + "083015.25+0100"
    assert out.SeriesDate == ""  # partial: emptied, never passed on
    assert out.StudyTime == "083015"  # times of day kept
    assert shift_date("20200101-20200201", days).count("-") == 1
    assert "AcquisitionDateTime" in report.shifted and report.date_offset_days == days


def test_full_dates_only_when_asked():
    out, report = deidentify(_base("A", StudyDate="20200110"), SECRET, dates="full")
    assert out.StudyDate == "20200110"
    assert {c.CodeValue for c in out.DeidentificationMethodCodeSequence} == {"113100", "113106", "113108"}
    assert "Full Dates" in report.method
    with pytest.raises(ValueError, match="dates must be"):
        deidentify(_base("A"), SECRET, dates="fuzzy")


CHARSET_PHI = {
    "ISO_IR 100": ("Müller^Jürgen", "Universitätsspital Zürich", "Straße 5"),
    "ISO 2022 IR 87": ("山田^太郎", "東京大学病院", "東京都文京区"),
    "\\ISO 2022 IR 87": ("Yamada^Tarou=山田^太郎", "東京病院", "文京区"),
    "ISO 2022 IR 13\\ISO 2022 IR 87": ("ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎", "ﾄｳｷｮｳ ﾋﾞｮｳｲﾝ", "ﾌﾞﾝｷｮｳ"),
    "GB18030": ("王^小明", "北京协和医院", "北京市东城区"),
}


ESCAPES = re.compile(rb"\x1b[$()*+-./]?[$()*+-./]?[@-Z]")


@pytest.mark.parametrize("charset", sorted(CHARSET_PHI))
def test_phi_in_other_character_sets_is_gone_from_the_bytes(tmp_path, charset):
    name, institution, address = CHARSET_PHI[charset]
    ds = _base("PID-CS", SpecificCharacterSet=charset, StudyDate="20200110")
    ds.PatientName, ds.InstitutionName, ds.PatientAddress = name, institution, address
    ds.ReferringPhysicianName, ds.StudyDescription, ds.ImageComments = name, institution, address
    src = tmp_path / "src.dcm"
    ds.save_as(src, enforce_file_format=True)
    encodings = pydicom.charset.convert_encodings(ds.SpecificCharacterSet)
    raw = ESCAPES.sub(b"", src.read_bytes())
    # The bytes of each name part and text, without ISO 2022 escape sequences (the writer may
    # switch character sets at other places than a lone encode does).
    texts = [institution, address] + [part for part in re.split(r"[\^=]", name) if len(part) > 1]
    phi = [ESCAPES.sub(b"", encode_string(t, encodings)) for t in texts]
    assert not any(b"?" in p for p in phi)  # every character encodable in this character set
    assert all(p in raw for p in phi)  # the source really carries them, in that encoding
    out, _ = deidentify(pydicom.dcmread(src), SECRET)
    dst = tmp_path / "out.dcm"
    out.save_as(dst, enforce_file_format=True)
    data = dst.read_bytes()
    bare = ESCAPES.sub(b"", data)
    for p in phi:
        assert p not in bare, (charset, p)
        assert p not in data, (charset, p)
    assert pydicom.dcmread(dst).PatientName == out.PatientID  # still a readable file


ANNEX_E_WORDS = re.compile(
    r"(ID|Name|Names|Address|Telephone|Comments?|Institution|Physician|Operator|Station|Serial|Occupation"
    r"|Ethnic|Religious|Military|Branch|Insurance|Accession|Admitting|Admission|Scheduled|Performed"
    r"|Requesting|Requested|Device|Birth|Age|Allergies|Pregnancy|Medical|Region|Country|Author|Reviewer"
    r"|Verifying|Person|Responsible|Consulting|Mother|Patient|Date|Time|UID|Location|Text|Description)")
VALUES = {"DA": "20200110", "DT": "20200110101010", "TM": "101010", "PN": "SECRET^PERSON", "UI": "1.2.3.999",
          "IS": "5", "DS": "1.5", "US": 1, "SS": 1, "UL": 1, "SL": 1, "FL": 1.0, "FD": 1.0, "AS": "030Y",
          "AT": 0x00100010, "OB": b"SECRET", "OW": b"SECRET", "UN": b"SECRET", "UR": "http://secret",
          "UC": "SECRET", "UT": "SECRET", "LT": "SECRET", "ST": "SECRET", "LO": "SECRET", "SH": "SECRET",
          "CS": "SECRET", "AE": "SECRET", "SV": 1, "UV": 1}
# What deidentify writes itself (keyed replacements, emptied type 2 attributes, markers).
WRITTEN = {"PatientID", "PatientName", "InstitutionName", "StudyID", "AccessionNumber", "ReferringPhysicianName",
           "PatientBirthDate", "PatientIdentityRemoved", "DeidentificationMethod", "PatientAge",
           "DeidentificationMethodCodeSequence", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"}


def test_every_identifying_attribute_of_the_dictionary_is_removed_replaced_or_shifted():
    ds = _base("PID-WALK", StudyDate="20200110")
    walked = []
    for tag, (vr, _vm, _name, _retired, keyword) in DicomDictionary.items():
        vr = vr.split(" or ")[0]
        if not keyword or keyword in ("PixelData", "SOPClassUID") or tag >> 16 in (0x0002, 0xFFFE):
            continue
        if vr == "SQ" or vr not in VALUES:
            continue
        if not (vr in ("PN", "DA", "DT") or ANNEX_E_WORDS.search(keyword)):
            continue
        try:
            ds.add_new(tag, vr, VALUES[vr])
        except Exception:  # a value pydicom will not take for this attribute: not walked
            continue
        walked.append(keyword)
    assert len(walked) > 1000
    out, _ = deidentify(ds, SECRET)
    for keyword in walked:
        if keyword not in out:
            continue  # removed
        value = out[keyword].value
        if keyword in WRITTEN:
            assert "SECRET" not in str(value), keyword
        elif keyword in UID_REPLACE:
            assert str(value).startswith("2.25."), keyword
        elif out[keyword].VR in ("DA", "DT"):
            assert keyword in KEEP and not str(value).startswith("20200110"), keyword  # shifted
        else:  # kept on purpose (device type, patient characteristics): never a person's name
            assert keyword in KEEP and out[keyword].VR != "PN", keyword
    kept = {k for k in walked if k in out and k not in WRITTEN and k not in UID_REPLACE
            and out[k].VR not in ("DA", "DT")}
    # The walked attributes that survive unchanged, each a documented keep-list decision.
    assert kept <= {"PatientSex", "PatientAge", "PatientSize", "PatientWeight", "ManufacturerModelName",
                    "StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime", "PatientOrientation",
                    "PatientOrientationCodeSequence", "FrameTime", "ExposureTime", "DetectorType",
                    "LUTExplanation", "WindowCenterWidthExplanation", "PixelSpacingCalibrationType",
                    "ConversionType", "PositionerType", "FieldOfViewShape", "RescaleType", "ModalityLUTType",
                    "LossyImageCompressionMethod", "ContextIdentifier", "CodingSchemeVersion",
                    "MappingResource", "BodyPartExamined", "ImageType", "Modality", "ReferencedSOPClassUID",
                    "ImagePositionPatient", "ImageOrientationPatient", "DistanceSourceToPatient"}, kept
    assert keyword_for_tag(0x00100010) == "PatientName" and out.PatientName == out.PatientID


def test_import_shifts_by_default_records_the_option_and_refuses_mixing(new_project, tmp_path):
    from pydicom.data import get_testdata_file

    from mskstudio.io.importer import run_import
    from mskstudio.jobs import JobContext

    folder = tmp_path / "in"
    folder.mkdir()
    source = pydicom.dcmread(get_testdata_file("MR_small.dcm", download=False))
    source.StudyDate = "20200110"
    source.save_as(folder / "a.dcm")
    run_import(new_project, {"paths": [str(folder)], "workers": 1}, JobContext.null())
    assert new_project.meta("deid_dates") == "shift"
    image = new_project.images.table()[0]
    stored = pydicom.dcmread(new_project.images.dicom_path(int(image["id"])))
    days = date_offset_days(new_project.secret, str(source.PatientID))
    assert stored.StudyDate == shift_date("20200110", days) != "20200110"
    assert new_project.db.scalar("SELECT study_date FROM studies") == stored.StudyDate  # the row agrees
    with pytest.raises(ValueError, match="dates='shift'.*mix"):
        run_import(new_project, {"paths": [str(folder)], "workers": 1, "dates": "full"}, JobContext.null())

"""De-identification: DICOM PS3.15 Annex E Basic Application Level Confidentiality
Profile, implemented as a keep-list.

Only attributes listed in ``KEEP`` (image geometry, pixel module, LUTs, acquisition
technique, coded anatomy) survive, at every sequence depth; everything else, all
private tags and any sequence not listed, is dropped.  A keep-list fails safe: an
attribute we never heard of is removed rather than leaked.

Options applied (PS3.15 E.3), ``dates``:
* ``"shift"`` (the default), Retain Longitudinal Temporal Information with Modified
  Dates (113107): every date (DA) and the date part of every datetime (DT) that the
  keep-list lets through, at any depth, moves back by one offset per patient: a whole
  number of weeks between 1 and 10 years, keyed on the project secret and the original
  PatientID (so it is the same in every import, and unknown without the secret).
  Intervals between a patient's studies and the weekday survive; times of day are
  kept; a partial or unreadable date is emptied rather than passed on.
* ``"full"``, Retain Longitudinal Temporal Information with Full Dates (113106): dates
  kept unchanged, only when asked for explicitly.
* Retain Patient Characteristics (113108): sex, age, size, weight kept.  PatientAge
  is computed from birth date + study date before the birth date is dropped.

Replacements are keyed (HMAC-SHA256 with the project secret) so they are stable
across imports and unguessable without the secret: PatientID/PatientName -> "P-…",
InstitutionName -> "C-…" (centre stays usable for external test splits), instance
UIDs -> "2.25.<int>".  Pixel data is copied byte for byte (still compressed if it
was); burned-in text is NOT removed, which is why BurnedInAnnotation is kept.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import date, timedelta

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

__all__ = ["DeidReport", "deidentify", "pseudonym", "pseudo_uid", "centre_code", "KEEP", "DATE_OPTIONS",
           "date_offset_days", "shift_date"]

DATE_OPTIONS = ("shift", "full")
_DATES_TEXT = {"shift": "Retain Longitudinal Temporal Information with Modified Dates",
               "full": "Retain Longitudinal Temporal Information with Full Dates"}
# CID 7050 De-identification Method codes.
_DATES_CODE = {"shift": ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
               "full": ("113106", "Retain Longitudinal Temporal Information Full Dates Option")}


def method_text(dates: str = "shift") -> str:
    return ("PS3.15 Annex E Basic Application Level Confidentiality Profile (keep-list); "
            f"{_DATES_TEXT[dates]}; Retain Patient Characteristics; mskstudio keyed pseudonyms")


def method_codes(dates: str = "shift") -> tuple[tuple[str, str], ...]:
    return (("113100", "Basic Application Confidentiality Profile"), _DATES_CODE[dates],
            ("113108", "Retain Patient Characteristics Option"))


METHOD = method_text("shift")

KEEP = frozenset({
    # SOP common / general image, non-identifying
    "SpecificCharacterSet", "SOPClassUID", "ImageType", "Modality", "ConversionType",
    "PresentationIntentType", "SeriesNumber", "InstanceNumber", "AcquisitionNumber",
    "PatientOrientation", "BurnedInAnnotation", "RecognizableVisualFeatures",
    "LossyImageCompression", "LossyImageCompressionRatio", "LossyImageCompressionMethod",
    "QualityControlImage", "ImageLaterality", "Laterality", "BodyPartExamined", "ViewPosition",
    # Full Dates option
    "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "StudyTime", "SeriesTime",
    "AcquisitionTime", "ContentTime", "AcquisitionDateTime",  # dates shifted unless dates="full"
    # Patient Characteristics option
    "PatientSex", "PatientAge", "PatientSize", "PatientWeight",
    # Device type (not identity: DeviceSerialNumber, StationName are dropped)
    "Manufacturer", "ManufacturerModelName", "DetectorType",
    # Image pixel module
    "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated", "BitsStored",
    "HighBit", "PixelRepresentation", "PlanarConfiguration", "NumberOfFrames", "FrameIncrementPointer",
    "FrameTime", "PixelAspectRatio", "SmallestImagePixelValue", "LargestImagePixelValue",
    "PixelPaddingValue", "PixelPaddingRangeLimit", "PixelIntensityRelationship",
    "PixelIntensityRelationshipSign", "PixelData", "ExtendedOffsetTable", "ExtendedOffsetTableLengths",
    "ICCProfile", "ColorSpace",
    "RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor", "RedPaletteColorLookupTableData",
    "GreenPaletteColorLookupTableData", "BluePaletteColorLookupTableData",
    # Geometry / spacing
    "PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing", "PixelSpacingCalibrationType",
    "EstimatedRadiographicMagnificationFactor", "DistanceSourceToDetector", "DistanceSourceToPatient",
    "SliceThickness", "SpacingBetweenSlices", "ImagePositionPatient", "ImageOrientationPatient",
    # LUTs
    "RescaleSlope", "RescaleIntercept", "RescaleType", "ModalityLUTSequence", "ModalityLUTType",
    "LUTDescriptor", "LUTExplanation", "LUTData", "WindowCenter", "WindowWidth",
    "WindowCenterWidthExplanation", "VOILUTFunction", "VOILUTSequence", "PresentationLUTShape",
    # Acquisition technique (useful covariates, not identifying)
    "KVP", "ExposureTime", "XRayTubeCurrent", "Exposure", "ExposureInuAs", "ExposureIndex",
    "TargetExposureIndex", "DeviationIndex", "RelativeXRayExposure", "Sensitivity", "FilterType",
    "Grid", "FocalSpots", "BodyPartThickness", "PositionerType", "FieldOfViewShape",
    "FieldOfViewDimensions", "ImageAndFluoroscopyAreaDoseProduct",
    # Coded anatomy / view and their code items
    "AnatomicRegionSequence", "AnatomicRegionModifierSequence", "ViewCodeSequence",
    "ViewModifierCodeSequence", "PatientOrientationCodeSequence", "PurposeOfReferenceCodeSequence",
    "CodeValue", "CodingSchemeDesignator", "CodingSchemeVersion", "CodeMeaning", "LongCodeValue",
    "URNCodeValue", "ContextIdentifier", "MappingResource",
    # References to other images (their UIDs are replaced below)
    "ReferencedImageSequence", "SourceImageSequence", "ReferencedSOPClassUID", "ReferencedFrameNumber",
    # Enhanced / multi-frame functional groups (contents are keep-listed too)
    "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence", "PixelMeasuresSequence",
    "PixelValueTransformationSequence", "FrameVOILUTSequence",
    # Written by us
    "PatientIdentityRemoved", "DeidentificationMethod", "DeidentificationMethodCodeSequence",
})

# Instance UIDs: replaced (PS3.15 action U), consistently, at any depth.
UID_REPLACE = frozenset({
    "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID",
    "ReferencedSOPInstanceUID", "ReferencedFrameOfReferenceUID", "IrradiationEventUID",
    "SynchronizationFrameOfReferenceUID", "ConcatenationUID", "DimensionOrganizationUID",
    "MediaStorageSOPInstanceUID",
})

_FILE_META_KEEP = ("FileMetaInformationVersion", "MediaStorageSOPClassUID", "TransferSyntaxUID")


@dataclass
class DeidReport:
    removed: list[str] = field(default_factory=list)    # keywords (or "(gggg,eeee) private")
    replaced: list[str] = field(default_factory=list)   # keywords given keyed replacements
    added: list[str] = field(default_factory=list)      # e.g. PatientAge computed from birth date
    shifted: list[str] = field(default_factory=list)    # dates moved by the patient's offset
    method: str = METHOD
    date_offset_days: int = 0


def _hmac(secret: bytes, kind: str, value: str) -> bytes:
    # The kind prefix separates namespaces: a patient ID and a UID that happen to be
    # equal strings must not map to related outputs.
    return hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).digest()


def pseudonym(secret: bytes, patient_id: str) -> str:
    return "P-" + _hmac(secret, "patient", str(patient_id).strip()).hex()[:12]


def centre_code(secret: bytes, institution: str) -> str:
    return "C-" + _hmac(secret, "institution", str(institution).strip().upper()).hex()[:6]


def pseudo_uid(secret: bytes, uid: str) -> str:
    """'2.25.' + a 128-bit integer (PS3.5 B.2 UUID-derived form): <= 44 characters."""
    return "2.25." + str(int.from_bytes(_hmac(secret, "uid", str(uid).strip())[:16], "big"))


def date_offset_days(secret: bytes, patient_id: str) -> int:
    """The patient's date shift: minus 52 to 520 whole weeks, keyed (weekday kept)."""
    weeks = 52 + int.from_bytes(_hmac(secret, "dateshift", str(patient_id).strip())[:4], "big") % 469
    return -7 * weeks


def shift_date(value: str, days: int) -> str:
    """A DA value (YYYYMMDD; several values or a range 'A-B' too) moved by ``days``;
    '' where it is partial or unreadable (fail safe: never the original)."""
    def one(text: str) -> str:
        d = _date(text) if len(text.strip()) == 8 else None
        return (d + timedelta(days=days)).strftime("%Y%m%d") if d else ""
    text = str(value or "").strip()
    if not text:
        return ""
    if "-" in text:
        return "-".join(one(part) if part else "" for part in text.split("-"))
    return one(text)


def shift_datetime(value: str, days: int) -> str:
    """A DT value: its date part moved by ``days``, time and offset kept; '' if unreadable."""
    text = str(value or "").strip()
    if len(text) < 8:
        return ""
    moved = shift_date(text[:8], days)
    return moved + text[8:] if moved else ""


def shift_value(elem_value, vr: str, days: int):
    fn = shift_date if vr == "DA" else shift_datetime
    if isinstance(elem_value, (list, tuple, MultiValue)):
        return [fn(str(v), days) for v in elem_value]
    return fn(str(elem_value), days)


def _date(value) -> date | None:
    s = str(value or "").strip()
    try:
        return date(int(s[:4]), int(s[4:6]), int(s[6:8])) if len(s) >= 8 else None
    except ValueError:
        return None


def _age_string(born: date, when: date) -> str | None:
    if when < born:
        return None
    years = when.year - born.year - ((when.month, when.day) < (born.month, born.day))
    if years >= 2:
        return f"{min(years, 999):03d}Y"
    months = (when.year - born.year) * 12 + when.month - born.month - (when.day < born.day)
    return f"{months:03d}M" if months >= 1 else f"{(when - born).days:03d}D"


def _filter(src: Dataset, secret: bytes, report: DeidReport, prefix: str = "",
            shift_days: int | None = None) -> Dataset:
    out = Dataset()
    for elem in src:  # iterating converts raw elements, so VRs are resolved
        kw = elem.keyword
        name = (f"{prefix}{kw}" if kw
                else f"{prefix}{elem.tag} private" if elem.tag.is_private
                else f"{prefix}{elem.tag}")
        if elem.tag.is_private or not kw:
            report.removed.append(name)
        elif kw in UID_REPLACE:
            val = ([pseudo_uid(secret, u) for u in elem.value] if elem.VM > 1
                   else pseudo_uid(secret, elem.value) if elem.value
                   else elem.value)
            out.add(DataElement(elem.tag, elem.VR, val))
            report.replaced.append(name)
        elif kw not in KEEP:
            report.removed.append(name)
        elif elem.VR == "SQ":
            out.add(DataElement(elem.tag, "SQ", Sequence(
                [_filter(item, secret, report, f"{prefix}{kw}>", shift_days) for item in elem.value])))
        elif shift_days is not None and elem.VR in ("DA", "DT"):
            out.add(DataElement(elem.tag, elem.VR, shift_value(elem.value, elem.VR, shift_days)))
            report.shifted.append(name)
        else:
            # Pixel data and other bulk values are immutable bytes: shared, not copied.
            out.add(DataElement(elem.tag, elem.VR, elem.value, is_undefined_length=elem.is_undefined_length))
    return out


def deidentify(ds: Dataset, secret: bytes, *, dates: str = "shift") -> tuple[Dataset, DeidReport]:
    """Return a new, de-identified dataset (the input is not modified) and a report.

    ``dates``: "shift" (default, PS3.15 Modified Dates) or "full" (Full Dates, explicit).
    """
    if not secret:
        raise ValueError("a non-empty project secret is required")
    if dates not in DATE_OPTIONS:
        raise ValueError(f"dates must be one of {', '.join(DATE_OPTIONS)}, not {dates!r}")
    pid = str(ds.get("PatientID", "") or "")
    days = date_offset_days(secret, pid) if dates == "shift" else None
    report = DeidReport(method=method_text(dates), date_offset_days=days or 0)
    out = _filter(ds, secret, report, shift_days=days)

    # Patient characteristics: age must be derived before the birth date disappears.
    if not str(ds.get("PatientAge", "") or "").strip():
        born = _date(ds.get("PatientBirthDate"))
        when = next((d for d in (_date(ds.get(k))
                                 for k in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")) if d),
                    None)
        if born and when and (age := _age_string(born, when)):
            out.PatientAge = age
            report.added.append("PatientAge")

    out.PatientID = pseudonym(secret, pid)
    out.PatientName = out.PatientID
    report.replaced += ["PatientID", "PatientName"]
    if str(ds.get("InstitutionName", "") or "").strip():
        out.InstitutionName = centre_code(secret, ds.InstitutionName)
        report.replaced.append("InstitutionName")
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        if kw not in out:  # type 1 attributes: never leave them missing
            setattr(out, kw, pseudo_uid(secret, f"missing-{kw}-{pid}"))
    if "StudyID" in ds:  # type 2 in the general study module: present but empty (action Z)
        out.StudyID = ""
    if "AccessionNumber" in ds:
        out.AccessionNumber = ""
    for kw in ("ReferringPhysicianName", "PatientBirthDate"):
        if kw not in out and kw in ds:  # type 2 attributes stay present but empty
            setattr(out, kw, "")

    out.PatientIdentityRemoved = "YES"
    # LO holds 64 characters per value, so the text is stored as several values.
    method = report.method
    out.DeidentificationMethod = [method[i:i + 64] for i in range(0, len(method), 64)]
    codes = []
    for value, meaning in method_codes(dates):
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
        codes.append(item)
    out.DeidentificationMethodCodeSequence = Sequence(codes)

    meta = FileMetaDataset()
    src_meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    for kw in _FILE_META_KEEP:
        if kw in src_meta:
            setattr(meta, kw, src_meta[kw].value)
    meta.MediaStorageSOPClassUID = meta.get("MediaStorageSOPClassUID") or out.get("SOPClassUID")
    meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
    out.file_meta = meta
    if hasattr(ds, "original_encoding"):
        # Needed when the source had no file meta transfer syntax (dataset-only use).
        out.set_original_encoding(*ds.original_encoding)
    return out, report

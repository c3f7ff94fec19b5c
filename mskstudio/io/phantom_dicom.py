"""Turning a rendered phantom into a realistic CR/DX DICOM file.

The point is to exercise every path of the importer: both photometric interpretations,
12/14/16 bits stored (and a few signed images), non-trivial rescale, several VOI
windows, CR vs DX spacing tags, six lossless transfer syntaxes, and fake PHI in all the
places de-identification must scrub (including free text and burned-in markers).
All encodings are lossless so a test can check decoded == stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"   # Digital X-Ray Image Storage - For Presentation

# Transfer syntaxes and how often each is drawn (JPEG 2000 is the slowest to encode).
SYNTAXES = {
    str(ExplicitVRLittleEndian): 0.22,
    str(ImplicitVRLittleEndian): 0.14,
    str(DeflatedExplicitVRLittleEndian): 0.10,
    str(RLELossless): 0.20,
    str(JPEGLSLossless): 0.22,
    str(JPEG2000Lossless): 0.12,
}
COMPRESSED = {str(RLELossless), str(JPEGLSLossless), str(JPEG2000Lossless)}


@dataclass(frozen=True)
class Centre:
    """A hospital with its own detector: DICOM identity plus the look of its images."""

    key: str
    institution: str
    address: str
    manufacturer: str
    model: str
    modality: str           # CR (cassette, MONOCHROME1 common) or DX (flat panel)
    bits_stored: int
    mono1_prob: float
    noise: float            # quantum noise standard deviation (fraction of full scale)
    gamma: float            # detector / processing tone curve
    edge: float             # unsharp-mask strength of the vendor processing
    scatter: float
    collimate_prob: float


CENTRES = {
    "centre_a": Centre("centre_a", "St. Elsewhere General Hospital", "1 Hospital Road, Springfield",
                       "Acme Medical Systems", "RadiX DR-5000", "DX", 12, 0.1, 0.012, 0.85, 0.45, 0.10, 0.6),
    "centre_b": Centre("centre_b", "Mercy Children's and Adult Clinic", "42 Harbour Street, Portsmouth",
                       "Fujimoto Imaging", "FCR Capsula XL", "CR", 14, 0.8, 0.022, 1.15, 0.7, 0.2, 0.85),
    "centre_c": Centre("centre_c", "Nordlys University Medical Centre", "Universitetsveien 9, Tromso",
                       "Nordlys Diagnostics", "DRX Nova 16", "DX", 16, 0.15, 0.008, 1.0, 0.25, 0.14, 0.35),
}


def make_uid(*parts) -> str:
    """Deterministic UID from the archive seed and a path of names (reproducible archives)."""
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def to_stored(img: np.ndarray, bits: int, mono1: bool, signed: bool, rng) -> tuple[np.ndarray, float, float]:
    """Float image (0..1, bone bright) -> stored integers plus RescaleSlope/Intercept.

    The detector never uses its whole range, so values are mapped into a random
    sub-range; MONOCHROME1 stores the inverse (bone dark in stored values).
    """
    top = (1 << bits) - 1
    lo = rng.uniform(0.02, 0.12) * top
    hi = rng.uniform(0.85, 0.98) * top
    v = np.rint(lo + np.clip(img, 0, 1) * (hi - lo))
    if mono1:
        v = top - v
    slope, intercept = ((1.0, 0.0) if rng.random() < 0.5
                        else (float(rng.choice([0.5, 1.0, 2.0])), float(rng.choice([-1024.0, -512.0, 100.0]))))
    if signed:
        v -= 1 << (bits - 1)
        intercept += slope * (1 << (bits - 1))   # same modality values as the unsigned image
        return v.astype(np.int16), slope, intercept
    return v.astype(np.uint16), slope, intercept


def build_dataset(stored: np.ndarray, *, case, centre: Centre, patient: dict, study: dict,
                  series_uid: str, series_number: int, instance: int, slope: float, intercept: float,
                  rng) -> Dataset:
    bits = int(case.bits_stored)
    signed = stored.dtype == np.int16
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    sop_class = CR_STORAGE if centre.modality == "CR" else DX_STORAGE
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = case.sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = make_uid("mskstudio-phantoms-impl")
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"] if centre.modality == "CR" else ["ORIGINAL", "PRIMARY", ""]
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, case.sop_uid
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study["date"]
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = study["time"]
    ds.AccessionNumber = study["accession"]
    ds.Modality = centre.modality
    ds.PresentationIntentType = "FOR PRESENTATION" if centre.modality == "DX" else None
    if ds.PresentationIntentType is None:
        del ds.PresentationIntentType
    ds.Manufacturer, ds.ManufacturerModelName = centre.manufacturer, centre.model
    ds.InstitutionName, ds.InstitutionAddress = centre.institution, centre.address
    ds.StationName = f"{centre.key.upper()}-XR{1 + instance % 3}"
    ds.ReferringPhysicianName = patient["referrer"]
    ds.OperatorsName = patient["operator"]
    ds.StudyDescription = study["description"]
    ds.SeriesDescription = f"{case.region.replace('_', ' ').upper()} {case.view}"
    ds.PatientName = patient["name"]
    ds.PatientID = patient["id"]
    ds.OtherPatientIDs = patient["other_id"]
    ds.PatientBirthDate = patient["birth_date"]
    ds.PatientSex = patient["sex"]
    ds.PatientAge = f"{int(study['age']):03d}Y"
    ds.PatientAddress = patient["address"]
    ds.PatientTelephoneNumbers = patient["phone"]
    ds.BodyPartExamined = _BODY_PART.get(case.region, "")
    ds.ViewPosition = case.view if case.view in ("AP", "LAT", "PA") else ""
    ds.ImageLaterality = case.laterality or "U"
    ds.PatientOrientation = ["L", "F"] if case.view == "AP" else ["A", "F"]
    ds.StudyInstanceUID, ds.SeriesInstanceUID = case.study_uid, series_uid
    ds.StudyID = study["accession"][-6:]
    ds.SeriesNumber, ds.InstanceNumber = series_number, instance
    ds.ImageComments = f"{patient['display_name']} - {study['indication']}"
    ds.BurnedInAnnotation = "YES"
    ds.KVP = round(float(rng.uniform(50, 85)), 1)
    ds.ExposureTime = int(rng.integers(5, 40))
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = case.photometric
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits, bits - 1
    ds.PixelRepresentation = 1 if signed else 0
    sp = f"{case.spacing_mm:.4f}"
    if centre.modality == "CR":
        mag = round(float(rng.uniform(1.05, 1.15)), 3)
        ds.ImagerPixelSpacing = [f"{case.spacing_mm * mag:.4f}"] * 2
        ds.EstimatedRadiographicMagnificationFactor = mag
    else:
        ds.PixelSpacing = [sp, sp]
        ds.ImagerPixelSpacing = [sp, sp]
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.RescaleType = "US"
    _windows(ds, stored, slope, intercept, case.photometric == "MONOCHROME1", rng)
    ds.PixelData = stored.tobytes()
    return ds


_BODY_PART = {"hand": "HAND", "wrist_forearm": "FOREARM", "elbow": "ELBOW", "shoulder_humerus": "SHOULDER",
              "pelvis_hip": "PELVIS", "femur": "LEG", "knee": "KNEE", "lower_leg": "LEG",
              "ankle_foot": "FOOT", "spine": "LSPINE", "chest": "CHEST", "abdomen": "ABDOMEN"}


def _windows(ds, stored, slope, intercept, mono1, rng):
    """VOI window(s) in modality units covering the anatomy; sometimes three presets."""
    sample = stored[:: max(stored.shape[0] // 64, 1), :: max(stored.shape[1] // 64, 1)].astype(np.float64)
    lo, hi = np.percentile(sample * slope + intercept, [2, 99.5])
    c, w = (lo + hi) / 2, max(hi - lo, 1.0)
    if rng.random() < 0.35:
        ds.WindowCenter = [round(c, 1), round(c + 0.1 * w * (-1 if mono1 else 1), 1), round(c, 1)]
        ds.WindowWidth = [round(w, 1), round(w * 0.6, 1), round(w * 1.4, 1)]
        ds.WindowCenterWidthExplanation = ["NORMAL", "BONE", "SOFT"]
    else:
        ds.WindowCenter, ds.WindowWidth = round(c, 1), round(w, 1)
    ds.VOILUTFunction = "LINEAR"


def write_dataset(ds: Dataset, stored: np.ndarray, path, syntax: str) -> None:
    """Encode in ``syntax`` (lossless) and write a conformant DICOM Part 10 file."""
    if syntax in COMPRESSED:
        # keep our deterministic SOP Instance UID (compress() would mint a random one)
        ds.compress(syntax, stored, encoding_plugin="pylibjpeg" if syntax == str(RLELossless) else "",
                    generate_instance_uid=False)
    else:
        ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path, enforce_file_format=True)


# ---------------------------------------------------------------- fake PHI
_FIRST = {"F": ["JANE", "MARY", "ANNA", "SOFIA", "EMMA", "LEA", "NORA", "IDA", "CLARA", "MAYA"],
          "M": ["JOHN", "PETER", "LUCAS", "OMAR", "ERIK", "NOAH", "PAUL", "IVAN", "LEON", "SAM"]}
_LAST = ["DOE", "SMITH", "JOHANSEN", "MUELLER", "GARCIA", "NGUYEN", "ROSSI", "KOWALSKI", "OKAFOR",
         "BERG", "DUBOIS", "TANAKA", "HANSEN", "MORALES", "WEBER", "LARSEN"]
_STREETS = ["Elm Street", "Harbour Road", "Birch Lane", "Kings Avenue", "Mill Road", "Fjordgata"]
_DOCTORS = ["HOUSE^GREGORY^^DR", "QUINN^MICHAELA^^DR", "WATSON^JOHN^^DR", "GREY^MEREDITH^^DR"]


def fake_patient(rng, index: int, sex: str, birth_date: str, seed: int) -> dict:
    """Plausible (and entirely fake) identifying data in every PHI-bearing attribute."""
    first, last = str(rng.choice(_FIRST[sex])), str(rng.choice(_LAST))
    return {
        "id": f"PAT{seed % 100:02d}{index:05d}",
        "other_id": f"H-{int(rng.integers(100000, 999999))}",
        "name": f"{last}^{first}",
        "display_name": f"{first.title()} {last.title()}",
        "sex": sex,
        "birth_date": birth_date,
        "address": f"{int(rng.integers(1, 200))} {rng.choice(_STREETS)}, Springfield",
        "phone": f"+1-555-{int(rng.integers(1000, 9999))}",
        "referrer": str(rng.choice(_DOCTORS)),
        "operator": f"{rng.choice(_LAST)}^{rng.choice(_FIRST['F'] + _FIRST['M'])}",
    }

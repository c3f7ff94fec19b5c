"""DICOM Segmentation objects (binary SEG, PS3.3 A.51) of a project's masks, with pydicom.

One SEG file per annotated image, one segment per mask class.  Where a class has
several masks on an image (readers, model, import) the segment holds the best one:
``adjudicated`` > ``human`` > ``import`` > ``model``, then the most recently saved.
Model masks are ``AUTOMATIC`` segments (named after their segmenter run), the others
``MANUAL``.

Every identifier comes from the project store, i.e. the de-identified (pseudonymous)
UIDs and patient pseudonym — never from an original file.  UIDs the store lacks (the
frame of reference of a projection radiograph, a series UID of a hand-made row) are
derived from the project secret, so the same project exports the same UIDs again.
The SEG's own UIDs are derived from the masks' content stamps: an unchanged mask
re-exports under the same SOP instance UID, a changed one under a new one.

Pixels: BitsAllocated 1, frames bit-packed back to back (``pydicom.pixels.pack_bits``),
one frame per segment, at the source image's full size.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mskstudio.store import Project

SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"
SECONDARY_CAPTURE_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.7"
SOURCE_PRECEDENCE = ("adjudicated", "human", "import", "model")  # best first

# (code value, coding scheme, meaning) — SNOMED CT concepts of DICOM CID 7150/7151.
CATEGORY_ABNORMAL = ("49755003", "SCT", "Morphologically abnormal structure")
PROPERTY_TYPES = {
    "tumour": ("108369006", "SCT", "Neoplasm"),
    "tumor": ("108369006", "SCT", "Neoplasm"),
    "soft-tissue mass": ("4147007", "SCT", "Mass"),
    "reactive zone": ("79654002", "SCT", "Edema"),
}
DEFAULT_PROPERTY_TYPE = ("52988006", "SCT", "Lesion")
SOURCE_IMAGE_PURPOSE = ("121322", "DCM", "Source image for image processing operation")
DERIVATION_SEGMENTATION = ("113076", "DCM", "Segmentation")


# ---- colour ---------------------------------------------------------------------------
def hex_to_rgb(color: str | None) -> tuple[int, int, int]:
    text = (color or "#e6194b").lstrip("#")
    return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)


def rgb_to_dicom_lab(rgb: Sequence[int]) -> list[int]:
    """sRGB (0-255) -> CIELab (D65) scaled to DICOM's unsigned 16-bit PCS-Lab (PS3.3 C.10.7.1.1)."""
    c = np.asarray(rgb, float) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = (
        np.array(
            [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
        )
        @ linear
    )
    xyz /= np.array([0.95047, 1.0, 1.08883])  # D65 white
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    lab = (116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2]))
    return [
        int(round(np.clip(lab[0], 0, 100) * 65535 / 100)),
        int(round((np.clip(lab[1], -128, 127) + 128) * 65535 / 255)),
        int(round((np.clip(lab[2], -128, 127) + 128) * 65535 / 255)),
    ]


# ---- choosing the masks ---------------------------------------------------------------
def segments_of_image(mask_rows: Sequence[Any]) -> list[Any]:
    """The best mask row per class (by source precedence, then newest), by class id."""
    best: dict[int, Any] = {}
    for r in mask_rows:
        if r["source"] not in SOURCE_PRECEDENCE or not r["area_px"]:
            continue
        cur = best.get(r["class_id"])
        key = (-SOURCE_PRECEDENCE.index(r["source"]), r["updated_at"] or "")
        if cur is None or key > (-SOURCE_PRECEDENCE.index(cur["source"]), cur["updated_at"] or ""):
            best[r["class_id"]] = r
    return sorted(best.values(), key=lambda r: r["class_id"])


# ---- building the dataset --------------------------------------------------------------
def _code(item: tuple[str, str, str]):
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.CodeValue, ds.CodingSchemeDesignator, ds.CodeMeaning = item
    return ds


def _derived_uid(project: Project, *parts: Any):
    """A '2.25.' UID keyed by the project secret (as de-identification makes them): stable, reveals nothing."""
    from mskstudio.io.deid import pseudo_uid

    return pseudo_uid(project.secret, "\x1f".join(["mskstudio-seg", *(str(p) for p in parts)]))


def _valid_uid(project: Project, value: str | None, kind: str):
    """``value`` when it is a valid UID; else (a hand-made row) a derived one, so the file stays valid."""
    from pydicom.uid import RE_VALID_UID

    if value and len(value) <= 64 and RE_VALID_UID.match(value):
        return value
    return _derived_uid(project, kind, value or "")


def _frame_of_reference(project: Project, image: Any):
    """The source's own FrameOfReferenceUID when its stored (de-identified) file has one."""
    from pydicom import dcmread

    try:
        ds = dcmread(
            project.images.dicom_path(image["id"]),
            stop_before_pixels=True,
            specific_tags=["SOPInstanceUID", "FrameOfReferenceUID"],
        )
        # Only a file whose UIDs are the stored ones (de-identified copy, or kept as is).
        if str(ds.get("SOPInstanceUID", "")) == image["sop_uid"] and ds.get("FrameOfReferenceUID"):
            return str(ds.FrameOfReferenceUID)
    except (OSError, FileNotFoundError, KeyError, ValueError):
        pass  # no readable file: derive one
    return _derived_uid(project, "frame-of-reference", image["sop_uid"])


def _segment_item(number: int, row: Any, run_names: dict[int, str]):
    from pydicom.dataset import Dataset

    seg = Dataset()
    seg.SegmentNumber = number
    seg.SegmentLabel = str(row["class_name"])[:64]
    seg.SegmentDescription = f"{row['source']} mask by {row['annotator']}"[:64]
    if row["source"] == "model":
        seg.SegmentAlgorithmType = "AUTOMATIC"
        seg.SegmentAlgorithmName = run_names.get(row["run_id"], f"mskstudio segmenter run {row['run_id']}")[:64]
    else:
        seg.SegmentAlgorithmType = "MANUAL"
    seg.SegmentedPropertyCategoryCodeSequence = [_code(CATEGORY_ABNORMAL)]
    name = str(row["class_name"]).strip().lower()
    seg.SegmentedPropertyTypeCodeSequence = [_code(PROPERTY_TYPES.get(name, DEFAULT_PROPERTY_TYPE))]
    seg.RecommendedDisplayCIELabValue = rgb_to_dicom_lab(hex_to_rgb(row["color"]))
    return seg


def _per_frame_item(number: int, image: Any, source_class: str, source_sop: str):
    from pydicom.dataset import Dataset

    source = Dataset()
    source.ReferencedSOPClassUID = source_class
    source.ReferencedSOPInstanceUID = source_sop
    if int(image["n_frames"] or 1) > 1:
        source.ReferencedFrameNumber = int(image["frame"]) + 1
    source.PurposeOfReferenceCodeSequence = [_code(SOURCE_IMAGE_PURPOSE)]
    derivation = Dataset()
    derivation.SourceImageSequence = [source]
    derivation.DerivationCodeSequence = [_code(DERIVATION_SEGMENTATION)]
    content = Dataset()
    content.DimensionIndexValues = [number]
    ident = Dataset()
    ident.ReferencedSegmentNumber = number
    frame = Dataset()
    frame.DerivationImageSequence = [derivation]
    frame.FrameContentSequence = [content]
    frame.SegmentIdentificationSequence = [ident]
    return frame


def build_seg(project: Project, image_id: int, mask_rows: Sequence[Any], masks: Sequence[np.ndarray]):
    """A pydicom FileDataset (SEG) of ``masks`` (bool, full image size), one segment each."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.pixels import pack_bits
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    from mskstudio import __version__

    image = project.images.get(image_id)
    rows, cols = int(image["rows"]), int(image["cols"])
    stamp = [f"{r['id']}@{r['updated_at']}" for r in mask_rows]
    sop_uid = _derived_uid(project, "seg-instance", image["sop_uid"], image["frame"], *stamp)
    series_uid = _derived_uid(project, "seg-series", image["sop_uid"], image["frame"])
    source_class = image["sop_class_uid"] or SECONDARY_CAPTURE_SOP_CLASS_UID
    source_sop = _valid_uid(project, image["sop_uid"], "instance")
    source_series = _valid_uid(project, image["series_uid"], f"series of {image['sop_uid']}")
    now = dt.datetime.now()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SEG_SOP_CLASS_UID
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SEG_SOP_CLASS_UID, sop_uid
    # Patient and study: the pseudonymous identity the project keeps.
    ds.PatientName = image["pseudonym"]
    ds.PatientID = image["pseudonym"]
    ds.PatientBirthDate, ds.PatientSex = "", ""
    ds.StudyInstanceUID = _valid_uid(project, image["study_uid"], "study")
    ds.StudyDate = (image["study_date"] or "").replace("-", "")[:8]
    ds.StudyTime, ds.ReferringPhysicianName, ds.StudyID, ds.AccessionNumber = "", "", "", ""
    # Series, equipment, frame of reference.
    ds.Modality = "SEG"
    ds.SeriesInstanceUID, ds.SeriesNumber = series_uid, 900
    ds.SeriesDescription = "mskstudio lesion segmentation"
    ds.Manufacturer = "mskstudio"
    ds.ManufacturerModelName = "mskstudio"
    ds.DeviceSerialNumber = "0"
    ds.SoftwareVersions = __version__
    ds.FrameOfReferenceUID = _frame_of_reference(project, image)
    ds.PositionReferenceIndicator = ""
    # Segmentation image.
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.ContentLabel = "LESIONS"
    ds.ContentDescription = "lesion masks"
    readers = sorted({str(r["annotator"]) for r in mask_rows})
    ds.ContentCreatorName = (
        readers[0][:64] if len(readers) == 1 else ""
    )  # one person per PN; each segment names its reader
    ds.SegmentsOverlap = "UNDEFINED"  # classes are drawn independently and may overlap
    ds.SegmentationType = "BINARY"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 1, 0, 0
    ds.LossyImageCompression = "00"
    run_names = {r["run_id"]: f"mskstudio segmenter run {r['run_id']}" for r in mask_rows if r["run_id"]}
    ds.SegmentSequence = [_segment_item(i + 1, r, run_names) for i, r in enumerate(mask_rows)]
    # Multi-frame functional groups and the one dimension (segment number).
    ds.NumberOfFrames = len(mask_rows)
    measures = Dataset()
    if image["spacing_row_mm"] and image["spacing_col_mm"]:
        measures.PixelSpacing = [float(image["spacing_row_mm"]), float(image["spacing_col_mm"])]
    shared = Dataset()
    shared.PixelMeasuresSequence = [measures]
    ds.SharedFunctionalGroupsSequence = [shared]
    ds.PerFrameFunctionalGroupsSequence = [
        _per_frame_item(i + 1, image, source_class, source_sop) for i in range(len(mask_rows))
    ]
    dim_uid = _derived_uid(project, "seg-dimensions", sop_uid)
    organization = Dataset()
    organization.DimensionOrganizationUID = dim_uid
    ds.DimensionOrganizationSequence = [organization]
    index = Dataset()
    index.DimensionOrganizationUID = dim_uid
    index.DimensionIndexPointer = 0x0062000B  # ReferencedSegmentNumber
    index.FunctionalGroupPointer = 0x0062000A  # SegmentIdentificationSequence
    index.DimensionDescriptionLabel = "Segment Number"
    ds.DimensionIndexSequence = [index]
    # Common instance reference: the source image by its stored series and instance.
    instance = Dataset()
    instance.ReferencedSOPClassUID = source_class
    instance.ReferencedSOPInstanceUID = source_sop
    series = Dataset()
    series.SeriesInstanceUID = source_series
    series.ReferencedInstanceSequence = [instance]
    ds.ReferencedSeriesSequence = [series]
    frames = np.stack([np.asarray(m, bool) for m in masks]).astype(np.uint8)
    if frames.shape[1:] != (rows, cols):
        raise ValueError(f"masks of {frames.shape[1:]} for an image of {(rows, cols)}")
    ds.PixelData = pack_bits(frames)  # frames back to back, padded to an even length
    ds["PixelData"].VR = "OB"
    return ds


def write_seg(project: Project, image_id: int, path: Path, *, mask_rows: Sequence[Any] | None = None) -> int:
    """Write the SEG of one image to ``path``; returns the number of segments (0: nothing written)."""
    rows = segments_of_image(mask_rows if mask_rows is not None else project.annotations.masks_of(image_id))
    if not rows:
        return 0
    ds = build_seg(project, image_id, rows, [project.annotations.load_mask(r["id"]) for r in rows])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    ds.save_as(tmp, enforce_file_format=True)
    tmp.replace(path)
    return len(rows)


def read_seg_frames(path: Path) -> tuple[np.ndarray, list[str]]:
    """(frames as bool (n, rows, cols), segment labels) of a SEG file: the check of an export."""
    from pydicom import dcmread

    ds = dcmread(path)
    frames = ds.pixel_array.astype(bool)
    if frames.ndim == 2:
        frames = frames[None]
    order = [
        int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber) for f in ds.PerFrameFunctionalGroupsSequence
    ]
    labels = {int(s.SegmentNumber): str(s.SegmentLabel) for s in ds.SegmentSequence}
    return frames, [labels[n] for n in order]

"""DICOM Segmentation objects (PS3.3 A.51) of a project's masks, written by highdicom.

One SEG file per annotated image, one segment per mask class.  Where a class has
several masks on an image (readers, model, import) the segment holds the best one:
``adjudicated`` > ``human`` > ``import`` > ``model``, then the most recently saved —
what a PACS viewer should show.  ``every_mask`` writes one segment per mask instead
(several segments may share a class), so another project can import them all.

* BINARY unless a chosen model mask kept its probability map; then FRACTIONAL
  (PROBABILITY, 255 levels) with the drawn masks as 0 / 1 and the model's map nudged
  so that ``> 0.5`` reads back as the stored mask exactly (see ``probability``).
* Segments: label = class name, SNOMED CT category "Morphologically abnormal
  structure" and a type by class (Neoplasm, Mass, Edema, else Lesion); ``MANUAL`` for
  drawn / imported / adjudicated masks, ``AUTOMATIC`` with the segmenter run's name and
  version (algorithm identification) for model masks.  The tracking id holds the
  provenance (source and annotator) so a re-import restores it.
* The source image is the stored de-identified file (``sources.source_dataset``): the
  SEG carries the pseudonymous patient and study and references the stored SOP UID.

UIDs are derived from the project secret and the masks' content stamps: an unchanged
mask re-exports under the same SOP instance UID, a changed one under a new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.io.exports.sources import derived_uid, source_dataset

if TYPE_CHECKING:
    from mskstudio.store import Project

SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"
SOURCE_PRECEDENCE = ("adjudicated", "human", "import", "model")  # best first
SEG_SERIES_NUMBER = 900
# A projection radiograph has no slice; highdicom's reader requires SliceThickness in the
# Pixel Measures item (the hand-made writer's files failed for want of it), so 1 mm is
# written as a nominal value.  Nothing reads it for a 2-D image.
NOMINAL_SLICE_THICKNESS_MM = 1.0
# Class name (lower case) -> SNOMED CT keyword in pydicom's code dictionary (CID 7151).
PROPERTY_TYPES = {"tumour": "Neoplasm", "tumor": "Neoplasm", "neoplasm": "Neoplasm",
                  "soft-tissue mass": "Mass", "mass": "Mass", "reactive zone": "Edema", "oedema": "Edema",
                  "edema": "Edema"}
DEFAULT_PROPERTY_TYPE = "Lesion"


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
        if r.source not in SOURCE_PRECEDENCE or not r.area_px:
            continue
        cur = best.get(r.class_id)
        key = (-SOURCE_PRECEDENCE.index(r.source), r.updated_at or "")
        if cur is None or key > (-SOURCE_PRECEDENCE.index(cur.source), cur.updated_at or ""):
            best[r.class_id] = r
    return sorted(best.values(), key=lambda r: r.class_id)


def every_segment(mask_rows: Sequence[Any]) -> list[Any]:
    """Every non-empty mask row, by class, then source precedence, then annotator (lossless export)."""
    rows = [r for r in mask_rows if r.source in SOURCE_PRECEDENCE and r.area_px]
    return sorted(rows, key=lambda r: (r.class_id, SOURCE_PRECEDENCE.index(r.source), str(r.annotator)))


def property_type(class_name: str):
    from pydicom.sr.codedict import codes

    return getattr(codes.SCT, PROPERTY_TYPES.get(str(class_name).strip().lower(), DEFAULT_PROPERTY_TYPE))


def tracking_id(row: Any) -> str:
    """Provenance a re-import reads back: 'source:annotator' (LO, at most 64 characters)."""
    return f"{row.source}:{row.annotator}"[:64]


def algorithm_of_run(project: Project, run_id: int | None):
    """Algorithm identification of a segmenter run: its name, and arch + run id as version."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from mskstudio import __version__

    run = project.models.get(run_id) if run_id is not None else None
    name = (run["name"] if run is not None else None) or f"mskstudio segmenter run {run_id}"
    arch = run["arch"] if run is not None else "unknown"
    return hd.AlgorithmIdentificationSequence(
        name=str(name)[:64],
        family=codes.cid7162.ArtificialIntelligence,
        version=f"run {run_id} {arch} mskstudio {__version__}"[:64],
        source="mskstudio",
    )


def _segment_description(project: Project, number: int, row: Any):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    automatic = row.source == "model"
    desc = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=str(row.class_name)[:64],
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=property_type(row.class_name),
        algorithm_type=(hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC if automatic
                        else hd.seg.SegmentAlgorithmTypeValues.MANUAL),
        algorithm_identification=algorithm_of_run(project, row.run_id) if automatic else None,
        tracking_id=tracking_id(row),
        tracking_uid=derived_uid(project, "seg-tracking", row.id),
    )
    desc.SegmentDescription = f"{row.source} mask by {row.annotator}"[:64]
    desc.RecommendedDisplayCIELabValue = rgb_to_dicom_lab(hex_to_rgb(row.color))
    return desc


# ---- building the dataset --------------------------------------------------------------
def segment_planes(project: Project, rows: Sequence[Any]) -> tuple[np.ndarray, bool]:
    """(pixel planes (rows, cols, segments), fractional?) of the chosen mask rows.

    Bool planes when no row kept a probability map; else uint8 levels 0-255 (drawn masks 0 / 255)."""
    from mskstudio.io.exports.probability import decode_probability, levels_agreeing_with

    masks = [project.annotations.load_mask(r.id) for r in rows]
    probs = [project.annotations.probability_png(r.id) if r.source == "model" else None for r in rows]
    if not any(p is not None for p in probs):
        return np.stack(masks, axis=-1), False
    planes = []
    for mask, png in zip(masks, probs, strict=True):
        levels = decode_probability(png) if png is not None else None
        if levels is None or levels.shape != mask.shape:
            planes.append(mask.astype(np.uint8) * 255)
        else:
            planes.append(levels_agreeing_with(levels, mask))
    return np.stack(planes, axis=-1), True


def build_seg(project: Project, image_id: int, mask_rows: Sequence[Any]):
    """A highdicom Segmentation of ``mask_rows`` (one segment each) on image ``image_id``."""
    import highdicom as hd

    from mskstudio import __version__

    image = project.images.record(image_id)
    source = source_dataset(project, image)
    planes, fractional = segment_planes(project, mask_rows)
    if planes.shape[:2] != image.shape:
        raise ValueError(f"masks of {planes.shape[:2]} for an image of {image.shape}")
    if image.n_frames > 1:
        # highdicom 0.28 fails on a legacy multi-frame source without functional groups; radiographs
        # are single-frame, so this is left for later rather than written half right.
        raise ValueError(f"image {image.sop_uid} frame {image.frame}: a frame of a multi-frame "
                         "object is not exported as DICOM SEG yet (its PNG masks are)")
    stack = planes[None]
    if fractional:
        pixel_array = stack.astype(np.float32) / 255.0  # levels k/255 round back to k exactly
    else:
        pixel_array = stack
    stamp = [f"{r.id}@{r.updated_at}" for r in mask_rows]
    readers = sorted({str(r.annotator) for r in mask_rows if r.source != "model"})
    spacing = image.spacing or (1.0, 1.0)  # no spacing: pixel units, as the viewer shows
    return hd.seg.Segmentation(
        source_images=[source],
        pixel_array=pixel_array,
        segmentation_type=(hd.seg.SegmentationTypeValues.FRACTIONAL if fractional
                           else hd.seg.SegmentationTypeValues.BINARY),
        fractional_type=hd.seg.SegmentationFractionalTypeValues.PROBABILITY,
        max_fractional_value=255,
        segment_descriptions=[_segment_description(project, i + 1, r) for i, r in enumerate(mask_rows)],
        series_instance_uid=derived_uid(project, "seg-series", image.sop_uid, image.frame),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=derived_uid(project, "seg-instance", image.sop_uid, image.frame, *stamp),
        instance_number=1,
        manufacturer="mskstudio",
        manufacturer_model_name="mskstudio",
        software_versions=__version__,
        device_serial_number="0",
        content_label="LESIONS",
        content_description="lesion masks",
        # One person per PN value; with several readers each segment names its own.
        content_creator_name=f"{readers[0][:62]}^" if len(readers) == 1 else None,
        pixel_measures=hd.PixelMeasuresSequence(pixel_spacing=spacing,
                                                slice_thickness=NOMINAL_SLICE_THICKNESS_MM),
        series_description="mskstudio lesion segmentation",
    )


def write_seg(project: Project, image_id: int, path: Path, *, mask_rows: Sequence[Any] | None = None,
              every_mask: bool = False) -> int:
    """Write the SEG of one image to ``path``; returns the number of segments (0: nothing written).

    ``every_mask``: one segment per mask (every reader, the model, imports) instead of the
    best mask per class — for moving annotations to another project without loss."""
    candidates = mask_rows if mask_rows is not None else project.annotations.masks_of(image_id)
    rows = every_segment(candidates) if every_mask else segments_of_image(candidates)
    if not rows:
        return 0
    seg = build_seg(project, image_id, rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    seg.save_as(tmp, enforce_file_format=True)
    tmp.replace(path)
    return len(rows)

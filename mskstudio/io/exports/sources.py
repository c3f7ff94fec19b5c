"""The source image of an export, as highdicom wants it: a pydicom header of the stored file.

SEG and SR objects reference the image they were drawn on.  The project keeps the
de-identified DICOM file (``blobs/``) and its pseudonymous identity (patient pseudonym,
study/series/SOP UIDs); the header handed to highdicom is built from both:

* from the stored file: SOP class, frame of reference, spacing, body part, laterality —
  what describes the pixels;
* from the store row: every identity attribute, so an export carries exactly the
  de-identified identity the project shows, even for a file referenced in place.

A row without a readable file (a hand-made test row, a moved source folder) still gets a
valid header: its missing UIDs are derived from the project secret, so the same project
exports the same UIDs again, and nothing about the patient is revealed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from mskstudio.domain import Image
    from mskstudio.store import Project

SECONDARY_CAPTURE_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.7"
# What describes the pixels; copied from the stored file when present.
PIXEL_DESCRIPTION = (
    "SOPClassUID", "Modality", "FrameOfReferenceUID", "PixelSpacing", "ImagerPixelSpacing",
    "BodyPartExamined", "Laterality", "ImageLaterality", "ViewPosition", "PhotometricInterpretation",
    "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel",
)


def derived_uid(project: Project, *parts: Any) -> str:
    """A '2.25.' UID keyed by the project secret (as de-identification makes them): stable, reveals nothing."""
    from mskstudio.io.deid import pseudo_uid

    return pseudo_uid(project.secret, "\x1f".join(["mskstudio-export", *(str(p) for p in parts)]))


def valid_uid(project: Project, value: str | None, kind: str) -> str:
    """``value`` when it is a valid UID; else (a hand-made row) a derived one, so the file stays valid."""
    from pydicom.uid import RE_VALID_UID

    if value and len(value) <= 64 and RE_VALID_UID.match(value):
        return value
    return derived_uid(project, kind, value or "")


def stored_header(project: Project, image_id: int) -> Dataset | None:
    """The stored (de-identified) file's header, or None when there is no readable file."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        return dcmread(project.images.dicom_path(image_id), stop_before_pixels=True)
    except (OSError, KeyError, ValueError, InvalidDicomError):
        return None


def source_dataset(project: Project, image: Image) -> Dataset:
    """A header of ``image`` (``project.images.record``) for highdicom's source_images."""
    from pydicom.dataset import Dataset

    stored = stored_header(project, image.id)
    ds = Dataset()
    if stored is not None:
        for keyword in PIXEL_DESCRIPTION:
            if keyword in stored:
                setattr(ds, keyword, stored.data_element(keyword).value)
    ds.SOPClassUID = image.sop_class_uid or ds.get("SOPClassUID") or SECONDARY_CAPTURE_SOP_CLASS_UID
    ds.SOPInstanceUID = valid_uid(project, image.sop_uid, "instance")
    ds.SeriesInstanceUID = valid_uid(project, image.series_uid, f"series of {image.sop_uid}")
    ds.StudyInstanceUID = valid_uid(project, image.study_uid, "study")
    ds.Modality = ds.get("Modality") or image.modality or "OT"
    ds.PatientID = image.pseudonym
    ds.PatientName = f"{image.pseudonym}^"  # one-component name (PS3.5 6.2.1.2)
    ds.PatientBirthDate = ds.PatientSex = ""
    ds.StudyDate = (image.study_date or "").replace("-", "")[:8]
    ds.StudyTime = ds.ReferringPhysicianName = ds.StudyID = ds.AccessionNumber = ""
    ds.Rows, ds.Columns = image.rows, image.cols
    if image.n_frames > 1:
        ds.NumberOfFrames = image.n_frames
    # A projection radiograph usually has no frame of reference; SEG needs one, so derive it.
    if not ds.get("FrameOfReferenceUID"):
        ds.FrameOfReferenceUID = derived_uid(project, "frame-of-reference", image.sop_uid)
    for keyword, value in (("SamplesPerPixel", 1), ("PhotometricInterpretation", "MONOCHROME2"),
                           ("BitsAllocated", 16), ("BitsStored", 16), ("HighBit", 15), ("PixelRepresentation", 0)):
        if keyword not in ds:
            setattr(ds, keyword, value)
    return ds



class ImageResolver:
    """Finds the project image a foreign file means, by SOP instance UID (and frame).

    A reference may be this project's de-identified UID (our own exports), or an original
    UID (a SEG drawn in 3D Slicer on the hospital's files, a table from the PACS), which
    the project knows only as its keyed hash — the UID de-identification gave the image.
    """

    def __init__(self, project: Project):
        from mskstudio.io.deid import pseudo_uid

        self._hash = lambda uid: pseudo_uid(project.secret, uid)
        self._ids: dict[tuple[str, int], int] = {}
        self._frames: dict[str, int] = {}
        for r in project.images.uid_index():
            self._ids[(r["sop_uid"], int(r["frame"]))] = int(r["id"])
            self._frames[r["sop_uid"]] = int(r["n_frames"] or 1)

    def stored_uid(self, uid: str) -> str | None:
        """The project's SOP UID for ``uid`` (itself or its keyed hash), or None."""
        uid = str(uid).strip()
        if uid in self._frames:
            return uid
        hashed = self._hash(uid)
        return hashed if hashed in self._frames else None

    def image_id(self, uid: str, frame: int = 0) -> int | None:
        stored = self.stored_uid(uid)
        return None if stored is None else self._ids.get((stored, int(frame)))

    def n_frames(self, uid: str) -> int:
        stored = self.stored_uid(uid)
        return self._frames.get(stored, 1) if stored else 1

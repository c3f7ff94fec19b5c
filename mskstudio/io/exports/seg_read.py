"""DICOM SEG import: masks drawn in other tools (3D Slicer, OHIF, a PACS) or by another project.

Each SEG is read with highdicom; its frames are mapped to project images by the referenced
source SOP instance UID (the project's de-identified UID, or an original UID the project
knows by its keyed hash — see ``sources.ImageResolver``).  Every non-empty segment becomes
a mask with source ``import``:

* class = the segment label (a new mask class when the project has none by that name);
* annotator = the provenance mskstudio wrote in the tracking id (``human:alice`` ->
  ``alice``; ``model:model`` -> ``model:model``), else the ``annotator`` given, the SEG's
  content creator, or ``model:<algorithm name>`` for an AUTOMATIC segment;
* FRACTIONAL segments are thresholded at 0.5 (our own exports read back exactly).

The audit entry of each mask keeps where it came from: file, SEG SOP instance UID, segment
number and label, original source and annotator, algorithm name and version.  Nothing of
the SEG's patient identity is stored.  A file that cannot be used is one line in
``problems``; the other files are imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.domain import MASK_SOURCES
from mskstudio.io.exports.sources import ImageResolver
from mskstudio.io.params import ImportSegParams

if TYPE_CHECKING:
    from mskstudio.jobs import JobContext
    from mskstudio.store import Project

SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"
DEFAULT_ANNOTATOR = "seg-import"


def seg_files(path: Path) -> list[Path]:
    """``path`` itself, or every file under the folder ``path`` (sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    raise FileNotFoundError(f"{path}: no such file or folder")


def parse_tracking(tracking_id: str | None) -> tuple[str, str] | None:
    """(source, annotator) of a tracking id mskstudio wrote ('source:annotator'), else None."""
    if not tracking_id or ":" not in tracking_id:
        return None
    source, annotator = str(tracking_id).split(":", 1)
    return (source, annotator) if source in MASK_SOURCES and annotator else None


def imported_annotator(desc: Any, seg: Any, fallback: str | None) -> tuple[str, dict[str, Any]]:
    """(annotator to store, provenance for the audit) of one segment description."""
    provenance: dict[str, Any] = {"tracking_id": desc.tracking_id}
    algorithm = desc.algorithm_identification
    if algorithm:
        provenance["algorithm"] = str(algorithm[0].AlgorithmName)
        provenance["algorithm_version"] = str(algorithm[0].AlgorithmVersion)
    parsed = parse_tracking(desc.tracking_id)
    if parsed is not None:
        source, who = parsed
        provenance.update(original_source=source, original_annotator=who)
        return (who if source == "human" else f"{source}:{who}")[:200], provenance
    if fallback:
        return fallback, provenance
    creator = str(seg.get("ContentCreatorName", "") or "").strip("^ ")
    if desc.algorithm_type == "AUTOMATIC":
        return f"model:{provenance.get('algorithm', 'unknown')}", provenance
    return creator or DEFAULT_ANNOTATOR, provenance


def _planes(seg: Any, sop_uid: str, n_frames: int, frame: int) -> np.ndarray:
    """(rows, cols, segments) float planes of one source image (frame), fractional rescaled to 0-1."""
    if n_frames > 1:
        return seg.get_pixels_by_source_frame(sop_uid, [frame + 1], combine_segments=False, dtype=np.float32)[0]
    return seg.get_pixels_by_source_instance([sop_uid], combine_segments=False, dtype=np.float32)[0]


def import_seg_file(project: Project, path: Path, resolver: ImageResolver, stats: dict[str, int],
                    problems: list[str], *, annotator: str | None = None) -> None:
    """Import the masks of one SEG file (one transaction); problems become lines in ``problems``."""
    import highdicom as hd
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        header = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except (InvalidDicomError, OSError, ValueError):
        stats["not_seg"] += 1
        return
    if str(header.get("SOPClassUID", "")) != SEG_SOP_CLASS_UID:
        stats["not_seg"] += 1
        return
    try:
        seg = hd.seg.segread(path)
    except Exception as exc:  # a broken SEG from any tool: one line, the other files go on
        stats["failed"] += 1
        problems.append(f"{path}: not a readable DICOM SEG ({exc})")
        return
    stats["files"] += 1
    fractional = seg.SegmentationType == "FRACTIONAL"
    ann = project.annotations
    with project.db.transaction():
        for _study, _series, sop_uid in seg.get_source_image_uids():
            n_frames = resolver.n_frames(sop_uid)
            for frame in range(n_frames):
                image_id = resolver.image_id(sop_uid, frame)
                if image_id is None:
                    stats["unknown_images"] += 1
                    problems.append(f"{path}: references image {sop_uid}, which is not in the project")
                    break
                try:
                    planes = _planes(seg, sop_uid, n_frames, frame)
                except (ValueError, RuntimeError, KeyError, AttributeError) as exc:
                    stats["failed"] += 1
                    problems.append(f"{path}: cannot map frames to image {sop_uid} ({exc})")
                    break
                image = project.images.record(image_id)
                if planes.shape[:2] != image.shape:
                    stats["bad_size"] += 1
                    problems.append(f"{path}: {planes.shape[1]}x{planes.shape[0]} pixels for image {sop_uid} "
                                    f"of {image.cols}x{image.rows}")
                    continue
                for i, number in enumerate(seg.segment_numbers):
                    mask = planes[..., i] > (0.5 if fractional else 0)
                    if not mask.any():
                        stats["empty"] += 1
                        continue
                    desc = seg.get_segment_description(number)
                    name = str(desc.segment_label or desc.segmented_property_type.meaning).strip()
                    who, provenance = imported_annotator(desc, seg, annotator)
                    ann.save_mask(
                        image_id, ann.class_id(name), mask, annotator=who, source="import",
                        action="mask.import_seg",
                        details={"file": str(path), "seg_uid": str(seg.SOPInstanceUID), "segment": int(number),
                                 "label": name, "fractional": fractional, **provenance},
                    )
                    stats["masks"] += 1


def import_seg(project: Project, path: Path, *, annotator: str | None = None,
               ctx: JobContext | None = None) -> dict[str, Any]:
    """Import every DICOM SEG at ``path`` (a file or a folder); returns counts and problem lines."""
    files = seg_files(Path(path))
    resolver = ImageResolver(project)
    stats = {"files": 0, "masks": 0, "not_seg": 0, "failed": 0, "unknown_images": 0, "bad_size": 0, "empty": 0}
    problems: list[str] = []
    for i, f in enumerate(files):
        if ctx is not None:
            ctx.check_cancelled()
            ctx.progress(i / max(len(files), 1), f"SEG {i + 1}/{len(files)}")
        import_seg_file(project, f, resolver, stats, problems, annotator=annotator)
    project.audit("mask.import_seg.summary", "project", None, {"path": str(path), **stats})
    return {**stats, "problems": problems}


def run_import_seg(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    """Job ``import-seg``: ``path`` (a file or folder) or ``paths`` (several chosen files)."""
    q = ImportSegParams.from_json(params).check(project)
    total: dict[str, Any] = {}
    for path in q.all_paths():
        result = import_seg(project, path, annotator=q.annotator, ctx=ctx)
        for k, v in result.items():
            total[k] = total.get(k, [] if isinstance(v, list) else 0) + v
    ctx.progress(1.0, f"{total['masks']} masks from {total['files']} SEG files")
    return total

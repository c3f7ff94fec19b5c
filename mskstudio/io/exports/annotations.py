"""Annotations in and out: the export folder, its import into another project, and
ground-truth mask import from a phantom manifest.

Export layout (``OUTDIR``)::

    masks/<image uid>/<class>__<annotator>__<source>.png   1-bit, full DICOM size
    boxes_coco.json                                         COCO detection (boxes; see coco.py)
    lesions.csv                                             one row per mask, with mm measurements
    labels.csv                                              image labels, every source (labels_table.py)
    seg/<image uid>.dcm                                     DICOM SEG, one per annotated image (seg_write.py)
    sr/<image uid>.dcm                                      DICOM SR TID 1500 measurement report (sr.py)

Images are named by their pseudonymous SOP instance UID (the de-identified one stored
in the project), never by anything that identifies the patient.
``import_annotations`` reads such a folder into another project holding the same images:
SEG masks, COCO boxes and labels, each stored with source ``import`` and its provenance.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.imaging.masks import decode_png
from mskstudio.io.exports.coco import coco_boxes, image_info
from mskstudio.io.params import ExportAnnotationsParams, ImportAnnotationsParams
from mskstudio.io.resume_marks import ResumeMarks, chunk_size

if TYPE_CHECKING:
    from mskstudio.jobs import JobContext
    from mskstudio.store import Project

LESION_COLUMNS = [
    "image_uid",
    "patient",
    "image_id",
    "class",
    "annotator",
    "source",
    "run_id",
    "area_px",
    "area_mm2",
    "longest_mm",
    "bbox",
    "png",
]


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-") or "x"


def export_annotations(
    project: Project, outdir: Path, *, seg: bool = True, seg_all: bool = False, sr: bool = True,
    labels: bool = True, ctx: JobContext | None = None, marks: ResumeMarks | None = None
) -> dict[str, Any]:
    """Write masks, COCO boxes, the lesion CSV, (``seg``) DICOM SEG and (``sr``) DICOM SR files under ``outdir``.

    ``seg_all``: every mask its own segment (lossless, for another project) instead of the best per class.
    ``marks``: the SEG and SR files already written by the killed job this one resumes are
    kept, not written again (each file is written to a temporary name, then renamed); the
    masks, CSVs and COCO file, which take seconds, are written again."""
    marks = marks or ResumeMarks(None)
    outdir = Path(outdir)
    (outdir / "masks").mkdir(parents=True, exist_ok=True)
    info = image_info(project)
    rows = project.annotations.all_masks()
    csv_rows = []
    for i, r in enumerate(rows):
        if ctx is not None:
            ctx.check_cancelled()
        im = info[r.image_id]
        rel = (
            Path("masks")
            / safe_name(im["uid"])
            / (f"{safe_name(r.class_name)}__{safe_name(r.annotator)}__{r.source}.png")
        )
        (outdir / rel).parent.mkdir(parents=True, exist_ok=True)
        (outdir / rel).write_bytes(project.annotations.mask_png(r.id))
        csv_rows.append(
            {
                "image_uid": im["uid"],
                "patient": im["patient"],
                "image_id": r.image_id,
                "class": r.class_name,
                "annotator": r.annotator,
                "source": r.source,
                "run_id": r.run_id if r.run_id is not None else "",
                "area_px": r.area_px,
                "area_mm2": "" if r.area_mm2 is None else f"{r.area_mm2:.6g}",
                "longest_mm": "" if r.longest_mm is None else f"{r.longest_mm:.6g}",
                "bbox": r.bbox_text,
                "png": rel.as_posix(),
            }
        )
        if ctx is not None and i % 20 == 0:
            ctx.progress(0.6 * (i + 1) / max(len(rows), 1), "masks")
    problems: list[str] = []
    seg_files = (export_seg(project, outdir / "seg", rows, info, every_mask=seg_all, problems=problems, ctx=ctx,
                            marks=marks) if seg else [])
    sr_counts = (export_sr(project, outdir / "sr", info, problems=problems, ctx=ctx, marks=marks)
                 if sr else {"files": 0})
    with open(outdir / "lesions.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=LESION_COLUMNS)
        w.writeheader()
        w.writerows(csv_rows)
    coco = coco_boxes(project, info)
    (outdir / "boxes_coco.json").write_text(json.dumps(coco, indent=1), encoding="utf-8")
    n_labels = 0
    if labels:
        from mskstudio.io.exports.labels_table import export_labels

        n_labels = export_labels(project, outdir / "labels.csv")["rows"]
    if not project.readonly:  # a read-only project can still be exported
        project.audit(
            "annotations.export",
            "project",
            None,
            {"outdir": str(outdir), "masks": len(rows), "boxes": len(coco["annotations"]), "seg": len(seg_files),
             "sr": sr_counts["files"]},
        )
    if ctx is not None:
        ctx.progress(1.0, "done")
    return {
        "masks": len(rows),
        "boxes": len(coco["annotations"]),
        "outdir": str(outdir),
        "csv": str(outdir / "lesions.csv"),
        "coco": str(outdir / "boxes_coco.json"),
        "seg": len(seg_files),
        "sr": sr_counts["files"],
        "labels": n_labels,
        "problems": problems,
        "sr_contents": {k: v for k, v in sr_counts.items() if k != "files"},
    }


def export_seg(
    project: Project, folder: Path, rows: list, info: dict[int, dict[str, Any]], *, every_mask: bool = False,
    problems: list[str] | None = None, ctx: JobContext | None = None, marks: ResumeMarks | None = None
) -> list[Path]:
    """One DICOM SEG per annotated image under ``folder``, named by the image's pseudonymous UID."""
    from mskstudio.io.exports.seg_write import write_seg

    marks = marks or ResumeMarks(None)
    by_image: dict[int, list] = {}
    for r in rows:
        by_image.setdefault(r.image_id, []).append(r)
    written = []
    every = chunk_size(len(by_image), lo=8, hi=256)
    try:
        for i, (image_id, image_rows) in enumerate(sorted(by_image.items())):
            if ctx is not None:
                ctx.check_cancelled()
                ctx.progress(0.6 + 0.2 * i / max(len(by_image), 1), "DICOM SEG")
            path = folder / f"{safe_name(info[image_id]['uid'])}.dcm"
            key = f"seg{image_id}"
            if key not in marks or (marks.get(key).get("written") and not path.exists()):
                # else the job this one resumes wrote it (or found its problem)
                try:
                    marks.add({key: {"written": bool(write_seg(project, image_id, path, mask_rows=image_rows,
                                                                every_mask=every_mask))}},
                              write=(i + 1) % every == 0)
                except (ValueError, TypeError, KeyError, AttributeError) as exc:  # one image: one line, rest goes on
                    if problems is None:
                        raise
                    marks.add({key: {"problem": f"SEG of image {info[image_id]['uid']}: {exc}"}}, write=False)
            if marks.get(key).get("written"):
                written.append(path)
            elif problems is not None and marks.get(key).get("problem"):
                problems.append(marks.get(key)["problem"])
    finally:  # a cancel or an error keeps the marks of the files written
        marks.flush()
    return written


def export_sr(
    project: Project, folder: Path, info: dict[int, dict[str, Any]], *, problems: list[str] | None = None,
    ctx: JobContext | None = None, marks: ResumeMarks | None = None
) -> dict[str, int]:
    """One DICOM SR (TID 1500) per image with measurements, masks, boxes or predictions; returns counts."""
    from mskstudio.io.exports.sr import classifier_predictions, report_image_ids, write_report

    predictions = classifier_predictions(project)
    image_ids = report_image_ids(project, predictions)
    marks = marks or ResumeMarks(None)
    totals = {"files": 0}
    every = chunk_size(len(image_ids), lo=8, hi=256)
    try:
        for i, image_id in enumerate(image_ids):
            if ctx is not None:
                ctx.check_cancelled()
                ctx.progress(0.8 + 0.15 * i / max(len(image_ids), 1), "DICOM SR")
            path = folder / f"{safe_name(info[image_id]['uid'])}.dcm"
            key = f"sr{image_id}"
            if key not in marks or (marks.get(key).get("counts", {}).get("files") and not path.exists()):
                # else the job this one resumes wrote it (or found its problem)
                try:
                    marks.add({key: {"counts": write_report(project, image_id, path, predictions=predictions)}},
                              write=(i + 1) % every == 0)
                except (ValueError, TypeError, KeyError, AttributeError) as exc:  # one image: one line, rest goes on
                    if problems is None:
                        raise
                    marks.add({key: {"problem": f"SR of image {info[image_id]['uid']}: {exc}"}}, write=False)
            if "problem" in marks.get(key):
                problems.append(marks.get(key)["problem"])
                continue
            counts = marks.get(key)["counts"]
            for k, v in counts.items():
                totals[k] = totals.get(k, 0) + v
    finally:  # a cancel or an error keeps the marks of the files written
        marks.flush()
    return totals


def run_export_annotations(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    q = ExportAnnotationsParams.from_json(params).check(project)
    flags = {"seg": bool(q.seg), "seg_all": bool(q.seg_all), "sr": bool(q.sr), "labels": bool(q.labels)}
    # The marks of a killed export count only for the same folder, options and masks.
    marks = ResumeMarks.for_job(project, ctx.job_id, params, signature={
        "outdir": str(q.outdir), **flags, "masks": [int(r.id) for r in project.annotations.all_masks()]})
    if marks.resumed:
        ctx.log(f"resuming: {len(marks.done)} DICOM files were written before the job stopped")
    result = export_annotations(project, Path(q.outdir), ctx=ctx, marks=marks, **flags)
    marks.finish()
    return result


def import_annotations(project: Project, folder: Path, *, replace_human: bool = False,
                       ctx: JobContext | None = None) -> dict[str, Any]:
    """Read an export folder into this project: seg/ masks, boxes_coco.json boxes, labels.csv labels."""
    from mskstudio.io.exports.coco import import_coco
    from mskstudio.io.exports.labels_table import import_labels
    from mskstudio.io.exports.seg_read import import_seg

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    parts = {"seg": folder / "seg", "boxes": folder / "boxes_coco.json", "labels": folder / "labels.csv"}
    if not any(p.exists() for p in parts.values()):
        raise ValueError(f"{folder}: no seg/, boxes_coco.json or labels.csv (not an export-annotations folder)")
    result: dict[str, Any] = {}
    if parts["seg"].is_dir():
        result["seg"] = import_seg(project, parts["seg"], ctx=ctx)
    if parts["boxes"].is_file():
        result["boxes"] = import_coco(project, parts["boxes"])
    if parts["labels"].is_file():
        result["labels"] = import_labels(project, parts["labels"], replace_human=replace_human)
    return result


def run_import_annotations(project: Project, params: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
    q = ImportAnnotationsParams.from_json(params).check(project)
    result = import_annotations(project, Path(q.path), replace_human=bool(q.replace_human), ctx=ctx)
    ctx.progress(1.0, "imported")
    return result


# ---- import ---------------------------------------------------------------------------
def import_masks(
    project: Project,
    manifest_path: Path,
    *,
    annotator: str = "phantom-truth",
    class_name: str = "tumour",
    boxes: bool = False,
) -> dict[str, int]:
    """Ground-truth masks from a phantom manifest (``mask`` column: PNG path, 0/255, DICOM size).

    Rows are matched to project images by the keyed hash of their original SOP UID.
    Stored with source 'import' in one transaction (one summary audit entry).
    """
    from PIL import Image

    manifest_path = Path(manifest_path)
    rows = _manifest_rows(manifest_path)
    by_hash = project.images.ids_by_original_hash()
    ann = project.annotations
    class_id = ann.class_id(class_name)
    stats = {"imported": 0, "unmatched": 0, "no_mask": 0, "bad_size": 0, "boxes": 0, "bad_rows": 0}
    problems: list[tuple[int, str]] = []
    with project.db.transaction():
        for line, row in enumerate(rows, start=2):
            if not (row.get("mask") or "").strip():
                stats["no_mask"] += 1
                continue
            try:
                image_id = manifest_image_id(project, row, manifest_path.parent, by_hash)
                if image_id is None:
                    stats["unmatched"] += 1
                    continue
                mask = _read_mask(manifest_path.parent / row["mask"].strip())
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                # One unreadable mask (missing, not a PNG, damaged, a decompression bomb)
                # is listed with its line; the other rows are imported.
                stats["bad_rows"] += 1
                problems.append((line, f"{row.get('mask', '')[:120]}: {exc}"))
                continue
            if mask.shape != project.images.record(image_id).shape:
                stats["bad_size"] += 1
                continue
            mask_id = ann.save_mask(
                image_id, class_id, mask, annotator=annotator, source="import", audit=False
            )
            stats["imported"] += 1
            if boxes:
                ann.box_from_mask(mask_id, annotator=annotator)
                stats["boxes"] += 1
        project.audit("mask.import", "project", None, {"manifest": str(manifest_path), **stats})
    return {**stats, "problems": problems[:200]}


def _manifest_rows(path: Path) -> list[dict]:
    """The manifest's rows; a file that is not a readable CSV with the needed columns is one clear error."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the manifest ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        missing = {"sop_uid", "mask"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: the manifest needs the columns {', '.join(sorted(missing))}")
        return [{k: (v if isinstance(v, str) else "") for k, v in row.items() if k} for row in reader]
    except csv.Error as exc:
        raise ValueError(f"{path} line {reader.line_num}: not readable as CSV ({exc})") from None


def _read_mask(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("L")) > 127


def manifest_image_id(
    project: Project, row: dict, base: Path, by_hash: dict[str, int] | None = None
) -> int | None:
    """The project image of a manifest row: keyed hash of its SOP UID, else of the file's own UID."""
    from mskstudio.io.deid import pseudo_uid

    if by_hash is None:
        by_hash = project.images.ids_by_original_hash()
    image_id = by_hash.get(pseudo_uid(project.secret, (row.get("sop_uid") or "").strip()))
    if image_id is None and row.get("file") and (Path(base) / row["file"]).is_file():
        # Some writers give the file a new SOP UID (e.g. when re-encoding); trust the file.
        from mskstudio.io.dicom import scan_header

        image_id = by_hash.get(pseudo_uid(project.secret, scan_header(Path(base) / row["file"]).sop_uid))
    return image_id


def read_mask_png(path: Path) -> np.ndarray:
    return decode_png(Path(path).read_bytes())

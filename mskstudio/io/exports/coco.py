"""Lesion boxes as COCO detection JSON (pycocotools, detectron2, mmdetection read it), and back.

Images are named by their pseudonymous SOP UID (``file_name``), with their size, frame,
patient pseudonym and SOP UID; a category's supercategory is its label set (``lesions``
for the default mask classes).  Each annotation keeps its provenance (annotator, source,
time) in extra keys COCO readers ignore.  ``bbox`` is [x, y, width, height] in pixels of
the full image, x = column, origin at the top-left corner of the top-left pixel.

Import matches images by ``sop_instance_uid`` (or ``file_name``), ours or an original UID
through its keyed hash, and stores boxes with source ``import``; the original source,
annotator and time go to the audit.  A box already there (same image, class, annotator,
rectangle) is not added twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mskstudio.io.exports.sources import ImageResolver

if TYPE_CHECKING:
    from mskstudio.store import Project

MAX_LINES = 200


def image_info(project: Project) -> dict[int, dict[str, Any]]:
    """image id -> pseudonymous name, size, frame, SOP UID and patient pseudonym."""
    return {
        r["id"]: {
            "uid": r["sop_uid"] + (f".f{r['frame']}" if r["frame"] else ""),
            "sop_uid": r["sop_uid"],
            "frame": int(r["frame"]),
            "rows": r["rows"],
            "cols": r["cols"],
            "patient": r["pseudonym"],
        }
        for r in project.images.identities()
    }


def coco_boxes(project: Project, info: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
    """COCO detection dict of every box."""
    info = info or image_info(project)
    boxes = project.annotations.all_boxes()
    categories = [{"id": r["id"], "name": r["name"], "supercategory": r["supercategory"]}
                  for r in project.annotations.categories()]
    image_ids = sorted({b.image_id for b in boxes})
    return {
        "info": {"description": f"mskstudio export of {project.name}"},
        "images": [
            {"id": i, "file_name": info[i]["uid"], "width": info[i]["cols"], "height": info[i]["rows"],
             "sop_instance_uid": info[i]["sop_uid"], "frame": info[i]["frame"], "patient": info[i]["patient"]}
            for i in image_ids
        ],
        "categories": categories,
        "annotations": [
            {
                "id": b.id,
                "image_id": b.image_id,
                "category_id": b.class_id,
                "bbox": [b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0],
                "area": (b.x1 - b.x0) * (b.y1 - b.y0),
                "iscrowd": 0,
                "annotator": b.annotator,
                "source": b.source,
                "time": b.updated_at,
            }
            for b in boxes
        ],
    }


def _class_id(project: Project, name: str, supercategory: str | None) -> int:
    """The project's class for a COCO category: a mask class when its set is the lesion set."""
    from mskstudio.store.repo_annotations import MASK_SET

    if not supercategory or supercategory == MASK_SET:
        return project.annotations.class_id(name)
    set_id = project.labels.find_label_set(supercategory)
    if set_id is None:
        set_id = project.labels.label_set(supercategory, kind="box")
    return project.labels.class_id(set_id, name)


def read_coco(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list)
                                             for k in ("images", "annotations", "categories")):
        raise ValueError(f"{path}: not a COCO file (needs 'images', 'annotations' and 'categories' lists)")
    return data


def import_coco(project: Project, path: Path, *, annotator: str | None = None) -> dict[str, Any]:
    """Import the boxes of a COCO detection file; returns counts and problem lines."""
    path = Path(path)
    data = read_coco(path)
    resolver = ImageResolver(project)
    images: dict[Any, int | None] = {}
    unknown: list[str] = []
    for im in data["images"]:
        uid = str(im.get("sop_instance_uid") or str(im.get("file_name", "")).partition(".f")[0])
        frame = int(im.get("frame") or 0)
        images[im.get("id")] = resolver.image_id(uid, frame)
        if images[im.get("id")] is None:
            unknown.append(f"{path.name}: image {im.get('file_name') or uid} is not in the project")
    categories = {c.get("id"): c for c in data["categories"]}
    stats = {"boxes": 0, "unchanged": 0, "unknown_images": len(unknown), "skipped": 0}
    problems: list[str] = []
    provenance: list[dict[str, Any]] = []
    with project.db.transaction():
        for a in data["annotations"]:
            image_id = images.get(a.get("image_id"))
            category = categories.get(a.get("category_id"))
            try:
                x, y, w, h = (float(v) for v in a["bbox"])
            except (KeyError, TypeError, ValueError):
                x = y = w = h = -1.0
            if image_id is None or category is None or w < 0 or h < 0:
                stats["skipped"] += 1
                if image_id is not None:
                    problems.append(f"{path.name}: annotation {a.get('id')}: "
                                    + ("unknown category" if category is None else "bad bbox"))
                continue
            class_id = _class_id(project, str(category["name"]), category.get("supercategory"))
            who = str(a.get("annotator") or annotator or "import")[:200]
            rect = (x, y, x + w, y + h)
            if any(b.class_id == class_id and b.source == "import" and b.annotator == who
                   and all(abs(u - v) < 1e-6 for u, v in zip(b.rect, rect, strict=True))
                   for b in project.annotations.boxes_of(image_id)):
                stats["unchanged"] += 1
                continue
            project.annotations.add_box(image_id, class_id, rect, annotator=who, source="import", audit=False)
            stats["boxes"] += 1
            provenance.append({"image_id": image_id, "class": category["name"], "annotator": who,
                               "source": a.get("source", ""), "time": a.get("time", ""), "coco_id": a.get("id")})
        project.audit("box.import_coco", "project", None, {"path": str(path), **stats, "boxes_in": provenance[:5000]})
    return {**stats, "unknown": unknown[:MAX_LINES], "problems": problems[:MAX_LINES]}

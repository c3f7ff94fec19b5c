"""Masks and boxes: pixel annotations with provenance, measurements and adjudication.

A mask is one row per (image, class, annotator, source) holding a 1-bit PNG at the
full DICOM size, its bbox, area and — when the pixel spacing is known — the longest
diameter (max Feret) in mm and the area in mm².  Every write here is one transaction
together with its audit entry: there is no separate "save" to forget.

Sources: ``human`` (drawn), ``model`` (pre-labelled by a segmenter run), ``import``
(ground truth from files), ``adjudicated`` (the final mask after two readers).
A model never overwrites a human mask: they live in different rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.domain import MASK_SOURCES, Box, LabelClass, Mask
from mskstudio.imaging.masks import decode_png, encode_png, iou_dice, measure

if TYPE_CHECKING:
    from mskstudio.store.project import Project

MASK_SET = "lesions"
DEFAULT_CLASSES = (("tumour", "#e6194b"), ("soft-tissue mass", "#f58231"), ("reactive zone", "#4363d8"))
MASK_COLUMNS = (
    "m.id, m.image_id, m.class_id, m.annotator, m.source, m.run_id, m.bbox, m.area_px, "
    "m.longest_mm, m.area_mm2, m.updated_at, c.name AS class_name, c.color"
)
NOW = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"


def _bbox_text(rect) -> str | None:
    return None if rect is None else ",".join(str(int(v)) for v in rect)


class AnnotationRepo:
    def __init__(self, project: Project):
        self.p = project

    # ---- classes ----------------------------------------------------------------------
    def mask_set_id(self, name: str = MASK_SET) -> int:
        """The mask label set (created with the default lesion classes on first use)."""
        found = self.p.labels.find_label_set(name)
        if found is not None:
            return found
        with self.p.db.transaction():
            set_id = self.p.labels.label_set(name, kind="mask", description="lesion masks and boxes")
            if name == MASK_SET:
                for cls_name, color in DEFAULT_CLASSES:
                    self.p.labels.class_id(set_id, cls_name, color=color)
        return set_id

    def classes(self, set_id: int | None = None) -> list[LabelClass]:
        return self.p.labels.classes(set_id or self.mask_set_id())

    def class_id(self, name: str, *, color: str | None = None, set_id: int | None = None) -> int:
        """Id of a mask class by name (created if new)."""
        return self.p.labels.class_id(set_id or self.mask_set_id(), name, color=color)

    def class_names(self) -> dict[int, str]:
        return {r["id"]: r["name"] for r in self.p.db.query("SELECT id, name FROM classes")}

    def categories(self) -> list[sqlite3.Row]:
        """id, name and supercategory (label set name) of every mask or box class, by id."""
        return self.p.db.query(
            "SELECT c.id, c.name, s.name AS supercategory FROM classes c "
            "JOIN label_sets s ON s.id = c.label_set_id WHERE s.kind IN ('mask', 'box') "
            "ORDER BY c.id"
        )

    # ---- masks --------------------------------------------------------------------------
    def _spacing(self, image_id: int) -> tuple[float | None, float | None, int, int]:
        row = self.p.db.one(
            "SELECT spacing_row_mm, spacing_col_mm, rows, cols FROM images WHERE id = ?", (image_id,)
        )
        if row is None:
            raise KeyError(f"no image {image_id}")
        return row["spacing_row_mm"], row["spacing_col_mm"], int(row["rows"]), int(row["cols"])

    def save_mask(
        self,
        image_id: int,
        class_id: int,
        mask: np.ndarray,
        *,
        annotator: str | None = None,
        source: str = "human",
        run_id: int | None = None,
        action: str = "mask.save",
        details: dict[str, Any] | None = None,
        audit: bool = True,
        probability_png: bytes | None = None,
    ) -> int:
        """Store (insert or replace) a mask; returns its row id.  One transaction with its audit.

        ``probability_png``: the model's probability map (8-bit greyscale PNG, image-sized) the
        mask was thresholded from; replacing a mask without one clears the old map."""
        if source not in MASK_SOURCES:
            raise ValueError(f"unknown mask source {source!r}")
        mask = np.asarray(mask, dtype=bool)
        sr, sc, rows, cols = self._spacing(image_id)
        if mask.shape != (rows, cols):
            raise ValueError(f"mask shape {mask.shape} != image {image_id} size {(rows, cols)}")
        m = measure(mask, sr, sc)
        png = encode_png(mask)
        annotator = annotator or self.p.author
        with self.p.db.transaction() as c:
            c.execute(
                "INSERT INTO masks(image_id, class_id, annotator, source, run_id, png, bbox, area_px, "
                "longest_mm, area_mm2, prob_png) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(image_id, class_id, annotator, source) DO UPDATE SET run_id = excluded.run_id, "
                "png = excluded.png, prob_png = excluded.prob_png, bbox = excluded.bbox, area_px = excluded.area_px, "
                f"longest_mm = excluded.longest_mm, area_mm2 = excluded.area_mm2, updated_at = {NOW}",
                (
                    image_id,
                    class_id,
                    annotator,
                    source,
                    run_id,
                    png,
                    _bbox_text(m["bbox"]),
                    m["area_px"],
                    m["longest_mm"],
                    m["area_mm2"],
                    probability_png,
                ),
            )
            mask_id = int(
                c.execute(
                    "SELECT id FROM masks WHERE image_id = ? AND class_id = ? AND annotator = ? "
                    "AND source = ?",
                    (image_id, class_id, annotator, source),
                ).fetchone()[0]
            )
            if audit:
                self.p.audit(
                    action,
                    "mask",
                    mask_id,
                    {
                        "image_id": image_id,
                        "class_id": class_id,
                        "annotator": annotator,
                        "source": source,
                        "run_id": run_id,
                        "area_px": m["area_px"],
                        **(details or {}),
                    },
                )
        return mask_id

    def mask_row(self, mask_id: int) -> Mask | None:
        row = self.p.db.one(
            f"SELECT {MASK_COLUMNS} FROM masks m JOIN classes c ON c.id = m.class_id WHERE m.id = ?",
            (mask_id,),
        )
        return None if row is None else Mask.from_row(row)

    def load_mask(self, mask_id: int) -> np.ndarray:
        png = self.mask_png(mask_id)
        if png is None:
            raise KeyError(f"no mask {mask_id}")
        return decode_png(png)

    def mask_png(self, mask_id: int) -> bytes | None:
        """The stored 1-bit PNG of a mask, or None."""
        return self.p.db.scalar("SELECT png FROM masks WHERE id = ?", (mask_id,))

    def probability_png(self, mask_id: int) -> bytes | None:
        """The model's 8-bit probability PNG of a mask, or None (none kept, or a pre-v7 read-only project)."""
        try:
            return self.p.db.scalar("SELECT prob_png FROM masks WHERE id = ?", (mask_id,))
        except sqlite3.OperationalError:  # no such column: an older project opened read-only
            return None

    def find_mask(
        self, image_id: int, class_id: int, *, annotator: str | None = None, source: str = "human"
    ) -> int | None:
        """Id of the mask of (image, class, annotator, source), or None."""
        return self.p.db.scalar(
            "SELECT id FROM masks WHERE image_id = ? AND class_id = ? AND annotator = ? AND source = ?",
            (image_id, class_id, annotator or self.p.author, source),
        )

    def masks_of(
        self, image_id: int, *, annotator: str | None = None, source: str | None = None
    ) -> list[Mask]:
        """Masks (no pixels) of an image, optionally of one annotator and/or source."""
        sql = f"SELECT {MASK_COLUMNS} FROM masks m JOIN classes c ON c.id = m.class_id WHERE m.image_id = ?"
        args: list[Any] = [image_id]
        if annotator is not None:
            sql += " AND m.annotator = ?"
            args.append(annotator)
        if source is not None:
            sql += " AND m.source = ?"
            args.append(source)
        return [Mask.from_row(r) for r in self.p.db.query(sql + " ORDER BY c.position, m.source, m.annotator",
                                                          tuple(args))]

    def all_masks(self, *, source: str | None = None) -> list[Mask]:
        sql = f"SELECT {MASK_COLUMNS} FROM masks m JOIN classes c ON c.id = m.class_id"
        args: tuple = ()
        if source:
            sql += " WHERE m.source = ?"
            args = (source,)
        return [Mask.from_row(r) for r in self.p.db.query(sql + " ORDER BY m.image_id, m.id", args)]

    def images_with_masks(self, sources: Sequence[str] = ("human", "import", "adjudicated"), *,
                          class_id: int | None = None) -> list[int]:
        """Images with a mask from ``sources`` (of class ``class_id`` if given), by id."""
        marks = ",".join("?" for _ in sources)
        sql = f"SELECT DISTINCT image_id FROM masks WHERE source IN ({marks})"
        args: tuple = tuple(sources)
        if class_id is not None:
            sql += " AND class_id = ?"
            args += (class_id,)
        return [r[0] for r in self.p.db.query(sql + " ORDER BY image_id", args)]

    def roi_rects(self, image_id: int | None = None) -> list[tuple[int, tuple[float, float, float, float]]]:
        """(image id, (x0, y0, x1, y1)) of every box and non-empty mask, of one image or all.

        Weakest first: boxes (non-human, then human; newest first within each), then
        mask bounding boxes by rising source precedence (model, import, human,
        adjudicated) — so the last rect of an image is its best single region of
        interest, and all of them together give its union.
        """
        where, args = ("AND image_id = ?", (image_id,)) if image_id is not None else ("", ())
        out: list[tuple[int, tuple[float, float, float, float]]] = []
        for r in self.p.db.query(  # predicted boxes (with a score) are no region until accepted
                f"SELECT image_id, x0, y0, x1, y1 FROM boxes WHERE score IS NULL {where} "
                "ORDER BY CASE source WHEN 'human' THEN 0 ELSE 1 END DESC, id DESC", args):
            out.append((int(r[0]), (float(r[1]), float(r[2]), float(r[3]), float(r[4]))))
        mask_where = "WHERE bbox IS NOT NULL" + (" AND image_id = ?" if image_id is not None else "")
        for r in self.p.db.query(
                f"SELECT image_id, bbox FROM masks {mask_where} ORDER BY CASE source "
                "WHEN 'adjudicated' THEN 0 WHEN 'human' THEN 1 WHEN 'import' THEN 2 ELSE 3 END DESC", args):
            try:
                x0, y0, x1, y1 = (float(v) for v in str(r[1]).split(","))
            except ValueError:
                continue  # a malformed bbox is no region
            out.append((int(r[0]), (x0, y0, x1, y1)))
        return out

    def delete_mask(self, mask_id: int) -> None:
        row = self.mask_row(mask_id)
        if row is None:
            return
        with self.p.db.transaction() as c:
            c.execute("DELETE FROM masks WHERE id = ?", (mask_id,))
            self.p.audit(
                "mask.delete",
                "mask",
                mask_id,
                {k: getattr(row, k) for k in ("image_id", "class_id", "annotator", "source", "area_px")},
            )

    def accept_model_mask(self, mask_id: int, *, annotator: str | None = None) -> int:
        """A model mask becomes the annotator's human mask (the model row stays for provenance)."""
        row = self.mask_row(mask_id)
        if row is None or row.source != "model":
            raise ValueError(f"mask {mask_id} is not a model mask")
        return self.save_mask(
            row.image_id,
            row.class_id,
            self.load_mask(mask_id),
            annotator=annotator,
            source="human",
            run_id=row.run_id,
            action="mask.accept",
            details={"from_mask": mask_id},
        )

    # ---- agreement and adjudication ---------------------------------------------------
    def agreement(self, mask_a: int, mask_b: int) -> dict[str, float]:
        iou, dice = iou_dice(self.load_mask(mask_a), self.load_mask(mask_b))
        return {"iou": iou, "dice": dice}

    def adjudicate(
        self,
        mask_ids: Sequence[int],
        *,
        method: str = "pick",
        pick: int | None = None,
        final: np.ndarray | None = None,
        annotator: str | None = None,
        class_id: int | None = None,
    ) -> int:
        """Store the final mask of an image with source 'adjudicated'.

        method: ``pick`` (take mask ``pick``), ``union``, ``intersection`` of ``mask_ids``,
        or ``final`` (an edited mask given as ``final``).
        """
        rows = [self.mask_row(i) for i in mask_ids]
        if not rows or any(r is None for r in rows):
            raise ValueError(f"unknown mask among {list(mask_ids)}")
        images = {r.image_id for r in rows}
        if len(images) != 1:
            raise ValueError("adjudication needs masks of one image")
        if method == "pick":
            if pick is None:
                raise ValueError("method 'pick' needs pick=<mask id>")
            result = self.load_mask(pick)
        elif method in ("union", "intersection"):
            stack = [self.load_mask(i) for i in mask_ids]
            op = np.logical_or if method == "union" else np.logical_and
            result = stack[0].copy()
            for m in stack[1:]:
                result = op(result, m)
        elif method == "final":
            if final is None:
                raise ValueError("method 'final' needs final=<mask array>")
            result = np.asarray(final, bool)
        else:
            raise ValueError(f"unknown adjudication method {method!r}")
        details: dict[str, Any] = {"method": method, "masks": list(mask_ids), "pick": pick}
        if len(mask_ids) == 2:
            details.update(self.agreement(mask_ids[0], mask_ids[1]))
        return self.save_mask(
            rows[0].image_id,
            class_id or rows[0].class_id,
            result,
            annotator=annotator,
            source="adjudicated",
            action="mask.adjudicate",
            details=details,
        )

    # ---- boxes --------------------------------------------------------------------------
    def add_box(
        self,
        image_id: int,
        class_id: int,
        rect: Sequence[float],
        *,
        annotator: str | None = None,
        source: str = "human",
        audit: bool = True,
    ) -> int:
        x0, y0, x1, y1 = _norm_rect(rect)
        annotator = annotator or self.p.author
        with self.p.db.transaction() as c:
            cur = c.execute(
                "INSERT INTO boxes(image_id, class_id, annotator, source, x0, y0, x1, y1) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (image_id, class_id, annotator, source, x0, y0, x1, y1),
            )
            box_id = int(cur.lastrowid)
            if audit:
                self.p.audit(
                    "box.add",
                    "box",
                    box_id,
                    {"image_id": image_id, "class_id": class_id, "rect": [x0, y0, x1, y1], "source": source},
                )
        return box_id

    def box(self, box_id: int) -> Box | None:
        row = self.p.db.one(
            "SELECT b.*, c.name AS class_name, c.color FROM boxes b "
            "JOIN classes c ON c.id = b.class_id WHERE b.id = ?",
            (box_id,),
        )
        return None if row is None else Box.from_row(row)

    def boxes_of(self, image_id: int, *, annotator: str | None = None) -> list[Box]:
        sql = (
            "SELECT b.*, c.name AS class_name, c.color FROM boxes b JOIN classes c ON c.id = b.class_id "
            "WHERE b.image_id = ? AND b.score IS NULL"  # a detector's predictions: DetectionRepo
        )
        args: list[Any] = [image_id]
        if annotator is not None:
            sql += " AND b.annotator = ?"
            args.append(annotator)
        return [Box.from_row(r) for r in self.p.db.query(sql + " ORDER BY b.id", tuple(args))]

    def all_boxes(self) -> list[Box]:
        return [Box.from_row(r) for r in self.p.db.query(
            "SELECT b.*, c.name AS class_name FROM boxes b "
            "JOIN classes c ON c.id = b.class_id WHERE b.score IS NULL ORDER BY b.image_id, b.id"
        )]

    def set_box(self, box_id: int, rect: Sequence[float], *, action: str = "box.resize") -> None:
        """Move or resize: the box gets the new rectangle."""
        old = self.box(box_id)
        if old is None:
            raise KeyError(f"no box {box_id}")
        x0, y0, x1, y1 = _norm_rect(rect)
        with self.p.db.transaction() as c:
            c.execute(
                f"UPDATE boxes SET x0 = ?, y0 = ?, x1 = ?, y1 = ?, updated_at = {NOW} WHERE id = ?",
                (x0, y0, x1, y1, box_id),
            )
            self.p.audit(
                action,
                "box",
                box_id,
                {"from": [old.x0, old.y0, old.x1, old.y1], "to": [x0, y0, x1, y1]},
            )

    def move_box(self, box_id: int, dx: float, dy: float) -> None:
        b = self.box(box_id)
        if b is None:
            raise KeyError(f"no box {box_id}")
        self.set_box(box_id, (b.x0 + dx, b.y0 + dy, b.x1 + dx, b.y1 + dy), action="box.move")

    def resize_box(self, box_id: int, rect: Sequence[float]) -> None:
        self.set_box(box_id, rect, action="box.resize")

    def relabel_box(self, box_id: int, class_id: int) -> None:
        with self.p.db.transaction() as c:
            c.execute(f"UPDATE boxes SET class_id = ?, updated_at = {NOW} WHERE id = ?", (class_id, box_id))
            self.p.audit("box.relabel", "box", box_id, {"class_id": class_id})

    def delete_box(self, box_id: int) -> None:
        old = self.box(box_id)
        if old is None:
            return
        with self.p.db.transaction() as c:
            c.execute("DELETE FROM boxes WHERE id = ?", (box_id,))
            self.p.audit(
                "box.delete",
                "box",
                box_id,
                {
                    "image_id": old.image_id,
                    "class_id": old.class_id,
                    "rect": [old.x0, old.y0, old.x1, old.y1],
                },
            )

    def box_from_mask(self, mask_id: int, *, annotator: str | None = None) -> int:
        """A box around a mask's pixels (x1, y1 exclusive), same class, audited."""
        row = self.mask_row(mask_id)
        if row is None:
            raise KeyError(f"no mask {mask_id}")
        rect = row.bbox
        if rect is None:
            raise ValueError(f"mask {mask_id} is empty")
        with self.p.db.transaction():
            box_id = self.add_box(
                row.image_id,
                row.class_id,
                rect,
                annotator=annotator,
                source=row.source if row.source != "adjudicated" else "human",
                audit=False,
            )
            self.p.audit("box.from_mask", "box", box_id, {"mask_id": mask_id, "rect": list(rect)})
        return box_id

    def referenced_image_ids(self) -> Iterable[int]:
        return [
            r[0]
            for r in self.p.db.query(
                "SELECT DISTINCT image_id FROM masks UNION SELECT DISTINCT image_id FROM boxes"
            )
        ]

    def counts(self) -> dict[str, int]:
        """How many lesion masks and boxes (not a detector's predictions) the project holds."""
        return {"masks": int(self.p.db.scalar("SELECT COUNT(*) FROM masks")),
                "boxes": int(self.p.db.scalar("SELECT COUNT(*) FROM boxes WHERE score IS NULL"))}


def _norm_rect(rect: Sequence[float]) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in rect)
    x0, x1 = min(x0, x1), max(x0, x1)
    y0, y1 = min(y0, y1), max(y0, y1)
    if x1 - x0 <= 0 or y1 - y0 <= 0:
        raise ValueError(f"empty box {rect}")
    return x0, y0, x1, y1

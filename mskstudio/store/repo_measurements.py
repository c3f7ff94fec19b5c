"""Rulers and angles drawn on images, kept with the spacing that turned them into millimetres.

Points are full-resolution image pixels (x = column, y = row).  The values are computed
here, from the image row's spacing at the time of the edit, so the GUI, the CLI and the
tests all read the same numbers; the spacing and its source are stored next to them
because a millimetre is only as good as the spacing behind it.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mskstudio.store.project import Project

Point = tuple[float, float]
KIND_POINTS = {"ruler": 2, "angle": 3}

# images.spacing_source (what the importer found) -> the vocabulary measurements report:
# PixelSpacing is calibrated to the patient plane; ImagerPixelSpacing is the detector
# plane (magnification not corrected, so mm run large); "estimated" is ImagerPixelSpacing
# divided by EstimatedRadiographicMagnificationFactor.
SPACING_SOURCES = {"pixel": "PixelSpacing", "imager": "ImagerPixelSpacing", "imager_corrected": "estimated"}
APPROXIMATE_SOURCES = ("ImagerPixelSpacing", "estimated")


def spacing_source_name(image_spacing_source: str | None, spacing: tuple[float, float] | None) -> str:
    if spacing is None:
        return "none"
    return SPACING_SOURCES.get(image_spacing_source or "", "none")


def ruler_length(points: Sequence[Point], spacing: tuple[float, float] | None) -> tuple[float, float | None]:
    """(length in pixels, length in mm or None); ``spacing`` is (row mm, column mm)."""
    (x0, y0), (x1, y1) = points[0], points[1]
    dx, dy = x1 - x0, y1 - y0
    mm = None if spacing is None else math.hypot(dx * spacing[1], dy * spacing[0])
    return math.hypot(dx, dy), mm


def angle_degrees(points: Sequence[Point], spacing: tuple[float, float] | None) -> float:
    """Angle at the middle point, measured in mm geometry (pixels where there is no spacing)."""
    a, v, c = points[0], points[1], points[2]
    sr, sc = spacing or (1.0, 1.0)
    u = ((a[0] - v[0]) * sc, (a[1] - v[1]) * sr)
    w = ((c[0] - v[0]) * sc, (c[1] - v[1]) * sr)
    nu, nw = math.hypot(*u), math.hypot(*w)
    if nu == 0 or nw == 0:
        return 0.0
    cos = max(-1.0, min(1.0, (u[0] * w[0] + u[1] * w[1]) / (nu * nw)))
    return math.degrees(math.acos(cos))


def _check_points(kind: str, points: Sequence[Point]) -> list[list[float]]:
    if kind not in KIND_POINTS:
        raise ValueError(f"unknown measurement kind {kind!r}; known: {', '.join(KIND_POINTS)}")
    if len(points) != KIND_POINTS[kind]:
        raise ValueError(f"a {kind} has {KIND_POINTS[kind]} points, got {len(points)}")
    out = [[float(x), float(y)] for x, y in points]
    if not all(math.isfinite(v) for p in out for v in p):
        raise ValueError("measurement points must be finite numbers")
    return out


class MeasurementRepo:
    def __init__(self, project: Project):
        self.p = project
        self._available: bool | None = None

    @property
    def available(self) -> bool:
        """False on a project older than schema 2 opened read-only (it could not be migrated)."""
        if self._available is None:
            self._available = self.p.db.one(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'measurements'") is not None
        return self._available

    # ---- reading ------------------------------------------------------------------------
    def get(self, measurement_id: int) -> dict[str, Any] | None:
        row = self.p.db.one("SELECT * FROM measurements WHERE id = ?", (measurement_id,))
        return None if row is None else _as_dict(row)

    def for_image(self, image_id: int) -> list[dict[str, Any]]:
        if not self.available:
            return []
        return [_as_dict(r) for r in self.p.db.query(
            "SELECT * FROM measurements WHERE image_id = ? ORDER BY id", (image_id,))]

    def listing(self, image_id: int | None = None) -> list[dict[str, Any]]:
        """Every measurement (or one image's) with the patient pseudonym, for tables and exports."""
        if not self.available:
            return []
        where, params = ("WHERE m.image_id = ?", (image_id,)) if image_id is not None else ("", ())
        return [_as_dict(r) for r in self.p.db.query(
            "SELECT m.*, p.pseudonym FROM measurements m JOIN images i ON i.id = m.image_id "
            "JOIN studies s ON s.id = i.study_id JOIN patients p ON p.id = s.patient_id "
            f"{where} ORDER BY m.image_id, m.id", params)]

    # ---- writing ------------------------------------------------------------------------
    def add(self, image_id: int, kind: str, points: Sequence[Point], *, author: str | None = None) -> int:
        values = self._values(image_id, kind, points)
        values["author"] = author or self.p.author
        cols = ", ".join(values)
        with self.p.db.transaction() as c:
            cur = c.execute(f"INSERT INTO measurements(image_id, kind, {cols}) "
                            f"VALUES (?, ?, {', '.join('?' for _ in values)})",
                            (image_id, kind, *values.values()))
            measurement_id = int(cur.lastrowid)
            self.p.audit("measurement.add", "measurement", measurement_id,
                         {"image_id": image_id, "kind": kind, "points": values["points"]})
        return measurement_id

    def move(self, measurement_id: int, points: Sequence[Point]) -> None:
        """New points (an endpoint was dragged); the values are recomputed."""
        old = self.get(measurement_id)
        if old is None:
            raise KeyError(f"no measurement {measurement_id}")
        values = self._values(old["image_id"], old["kind"], points)
        sets = ", ".join(f"{k} = ?" for k in values)
        with self.p.db.transaction() as c:
            c.execute(f"UPDATE measurements SET {sets}, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
                      "WHERE id = ?", (*values.values(), measurement_id))
            self.p.audit("measurement.move", "measurement", measurement_id,
                         {"from": old["points"], "to": json.loads(values["points"])})

    def delete(self, measurement_id: int) -> dict[str, Any] | None:
        """Remove one measurement; returns its row so ``restore`` can bring it back."""
        row = self.get(measurement_id)
        if row is None:
            return None
        with self.p.db.transaction() as c:
            c.execute("DELETE FROM measurements WHERE id = ?", (measurement_id,))
            self.p.audit("measurement.delete", "measurement", measurement_id,
                         {"image_id": row["image_id"], "kind": row["kind"], "points": row["points"]})
        return row

    def delete_many(self, measurement_ids: Sequence[int]) -> list[dict[str, Any]]:
        """Remove several at once (all or none); returns the rows removed."""
        with self.p.db.transaction():
            rows = [self.delete(mid) for mid in measurement_ids]
        return [r for r in rows if r is not None]

    def restore_many(self, rows: Sequence[dict[str, Any]]) -> None:
        with self.p.db.transaction():
            for row in rows:
                self.restore(row)

    def restore(self, row: dict[str, Any]) -> None:
        """Put back a deleted measurement exactly as it was (same id, author and times)."""
        stored = dict(row)
        stored.pop("pseudonym", None)
        stored["points"] = json.dumps(stored["points"])
        cols = ", ".join(stored)
        with self.p.db.transaction() as c:
            c.execute(f"INSERT INTO measurements({cols}) VALUES ({', '.join('?' for _ in stored)})",
                      tuple(stored.values()))
            self.p.audit("measurement.restore", "measurement", stored["id"], {"image_id": stored["image_id"]})

    # ---- values ---------------------------------------------------------------------------
    def _values(self, image_id: int, kind: str, points: Sequence[Point]) -> dict[str, Any]:
        pts = _check_points(kind, points)
        img = self.p.db.one("SELECT spacing_row_mm, spacing_col_mm, spacing_source FROM images WHERE id = ?",
                            (image_id,))
        if img is None:
            raise KeyError(f"no image {image_id}")
        spacing = ((float(img["spacing_row_mm"]), float(img["spacing_col_mm"]))
                   if img["spacing_row_mm"] and img["spacing_col_mm"] else None)
        length_px = length_mm = angle = None
        if kind == "ruler":
            length_px, length_mm = ruler_length(pts, spacing)
        else:
            angle = angle_degrees(pts, spacing)
        return {
            "points": json.dumps(pts), "length_px": length_px, "length_mm": length_mm, "angle_deg": angle,
            "spacing_row_mm": spacing[0] if spacing else None, "spacing_col_mm": spacing[1] if spacing else None,
            "spacing_source": spacing_source_name(img["spacing_source"], spacing),
        }


def _as_dict(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    out["points"] = [tuple(p) for p in json.loads(out["points"])]
    return out

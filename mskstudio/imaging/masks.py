"""Binary masks: stroke diffs for undo, painting primitives, RLE and PNG codecs (Qt-free).

A brush stroke changes a small part of a large mask.  ``MaskDiff`` keeps only the
changed rectangle (before and after, as bool patches), so 100 strokes on a
4000 x 3000 radiograph cost kilobytes, not 100 copies of 12 MB.

Painting helpers change the mask in place and return the *dirty rectangle*
``(x0, y0, x1, y1)`` (exclusive end) or ``None`` when nothing was touched, so the
viewer repaints only that part of its overlay.

Coordinates: ``x`` is the column, ``y`` the row, in mask pixels.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive)


# ---- rectangles ---------------------------------------------------------------------
def union_rect(a: Rect | None, b: Rect | None) -> Rect | None:
    if a is None:
        return b
    if b is None:
        return a
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def clip_rect(rect: Rect, shape: tuple[int, int]) -> Rect | None:
    h, w = shape
    x0, y0, x1, y1 = max(0, rect[0]), max(0, rect[1]), min(w, rect[2]), min(h, rect[3])
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def bbox(mask: np.ndarray) -> Rect | None:
    """Tight box of the non-zero pixels (exclusive end), or None for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


# ---- undo diffs ---------------------------------------------------------------------
@dataclass
class MaskDiff:
    """The changed rectangle of a mask: ``before`` and ``after`` bool patches."""

    rect: Rect
    before: np.ndarray
    after: np.ndarray

    @classmethod
    def between(cls, before: np.ndarray, after: np.ndarray, rect: Rect | None = None) -> MaskDiff | None:
        """Diff of two full masks, limited to ``rect`` when the caller knows it; None if equal."""
        if rect is None:
            changed = before != after
            rect = bbox(changed)
            if rect is None:
                return None
        else:
            rect = clip_rect(rect, before.shape)
            if rect is None:
                return None
        x0, y0, x1, y1 = rect
        b, a = before[y0:y1, x0:x1], after[y0:y1, x0:x1]
        changed = b != a
        inner = bbox(changed)
        if inner is None:
            return None
        ix0, iy0, ix1, iy1 = inner
        rect = (x0 + ix0, y0 + iy0, x0 + ix1, y0 + iy1)
        return cls(rect, b[iy0:iy1, ix0:ix1].copy(), a[iy0:iy1, ix0:ix1].copy())

    @classmethod
    def from_patch(cls, mask_after: np.ndarray, rect: Rect, before_patch: np.ndarray) -> MaskDiff | None:
        """Diff from a saved ``before`` patch of ``rect`` and the mask as it is now."""
        x0, y0, x1, y1 = rect
        after_patch = mask_after[y0:y1, x0:x1]
        changed = before_patch != after_patch
        inner = bbox(changed)
        if inner is None:
            return None
        ix0, iy0, ix1, iy1 = inner
        return cls(
            (x0 + ix0, y0 + iy0, x0 + ix1, y0 + iy1),
            before_patch[iy0:iy1, ix0:ix1].copy(),
            after_patch[iy0:iy1, ix0:ix1].copy(),
        )

    def apply(self, mask: np.ndarray) -> Rect:
        x0, y0, x1, y1 = self.rect
        mask[y0:y1, x0:x1] = self.after
        return self.rect

    def revert(self, mask: np.ndarray) -> Rect:
        x0, y0, x1, y1 = self.rect
        mask[y0:y1, x0:x1] = self.before
        return self.rect

    @property
    def nbytes(self) -> int:
        return int(self.before.nbytes + self.after.nbytes)


class StrokeRecorder:
    """Collects the before-patches of a stroke so its ``MaskDiff`` is exact and small.

    Call ``touch(rect)`` *before* each dab changes ``rect``; ``finish()`` returns the diff.
    Before-pixels are remembered on a tile grid, so a long stroke never copies the mask.
    """

    TILE = 64

    def __init__(self, mask: np.ndarray):
        self.mask = mask
        self.tiles: dict[tuple[int, int], np.ndarray] = {}
        self.rect: Rect | None = None

    def touch(self, rect: Rect | None) -> None:
        if rect is None:
            return
        rect = clip_rect(rect, self.mask.shape)
        if rect is None:
            return
        t = self.TILE
        x0, y0, x1, y1 = rect
        for ty in range(y0 // t, (y1 - 1) // t + 1):
            for tx in range(x0 // t, (x1 - 1) // t + 1):
                if (ty, tx) not in self.tiles:
                    self.tiles[(ty, tx)] = self.mask[ty * t : (ty + 1) * t, tx * t : (tx + 1) * t].copy()
        self.rect = union_rect(self.rect, rect)

    def dab(self, x: float, y: float, radius: float, value: bool = True) -> Rect | None:
        """Record then paint one disc; returns the dirty rectangle."""
        r = max(float(radius), 0.5)
        self.touch(
            (int(np.floor(x - r)), int(np.floor(y - r)), int(np.ceil(x + r)) + 1, int(np.ceil(y + r)) + 1)
        )
        return paint_disc(self.mask, x, y, radius, value)

    def line(
        self, p0: tuple[float, float], p1: tuple[float, float], radius: float, value: bool = True
    ) -> Rect | None:
        """Record then paint a segment of discs (brush drag between two mouse events)."""
        r = max(float(radius), 0.5)
        (xa, ya), (xb, yb) = p0, p1
        self.touch(
            (
                int(np.floor(min(xa, xb) - r)),
                int(np.floor(min(ya, yb) - r)),
                int(np.ceil(max(xa, xb) + r)) + 1,
                int(np.ceil(max(ya, yb) + r)) + 1,
            )
        )
        return paint_line(self.mask, p0, p1, radius, value)

    def region(self, rect: Rect | None) -> None:
        """Alias of ``touch`` for tools that compute their rectangle first (polygon, fill)."""
        self.touch(rect)

    def finish(self) -> MaskDiff | None:
        if self.rect is None:
            return None
        t = self.TILE
        x0, y0, x1, y1 = self.rect
        # Tile-aligned rect covering every touched tile; untouched tiles equal "after".
        ax0, ay0 = (x0 // t) * t, (y0 // t) * t
        ax1 = min(self.mask.shape[1], ((x1 - 1) // t + 1) * t)
        ay1 = min(self.mask.shape[0], ((y1 - 1) // t + 1) * t)
        before = self.mask[ay0:ay1, ax0:ax1].copy()
        for (ty, tx), patch in self.tiles.items():
            oy, ox = ty * t - ay0, tx * t - ax0
            before[oy : oy + patch.shape[0], ox : ox + patch.shape[1]] = patch
        self.tiles.clear()
        return MaskDiff.from_patch(self.mask, (ax0, ay0, ax1, ay1), before)


# ---- painting -------------------------------------------------------------------------
def paint_disc(mask: np.ndarray, x: float, y: float, radius: float, value: bool = True) -> Rect | None:
    """Set a filled disc of ``radius`` pixels centred at (x, y) to ``value``."""
    r = max(float(radius), 0.5)
    rect = clip_rect(
        (int(np.floor(x - r)), int(np.floor(y - r)), int(np.ceil(x + r)) + 1, int(np.ceil(y + r)) + 1),
        mask.shape,
    )
    if rect is None:
        return None
    x0, y0, x1, y1 = rect
    yy = (np.arange(y0, y1, dtype=np.float32) - y)[:, None]
    xx = (np.arange(x0, x1, dtype=np.float32) - x)[None, :]
    disc = yy * yy + xx * xx <= r * r
    if not disc.any():
        return None
    patch = mask[y0:y1, x0:x1]
    patch[disc] = bool(value)
    return rect


def paint_line(
    mask: np.ndarray, p0: tuple[float, float], p1: tuple[float, float], radius: float, value: bool = True
) -> Rect | None:
    """Discs along the segment p0 -> p1, spaced at most radius/2 apart (a continuous stroke)."""
    (xa, ya), (xb, yb) = p0, p1
    n = max(1, int(np.ceil(np.hypot(xb - xa, yb - ya) / max(radius * 0.5, 0.5))))
    rect = None
    for i in range(n + 1):
        t = i / n
        rect = union_rect(rect, paint_disc(mask, xa + (xb - xa) * t, ya + (yb - ya) * t, radius, value))
    return rect


def rasterize_polygon(shape: tuple[int, int], points: Sequence[tuple[float, float]]) -> np.ndarray:
    """Bool mask of a filled polygon (outline included), via PIL ImageDraw."""
    from PIL import Image, ImageDraw

    h, w = shape
    img = Image.new("1", (w, h), 0)
    pts = [(float(x), float(y)) for x, y in points]
    if len(pts) >= 3:
        ImageDraw.Draw(img).polygon(pts, fill=1, outline=1)
    elif pts:
        ImageDraw.Draw(img).line(pts, fill=1)
    return np.array(img, dtype=bool)


def fill_polygon(mask: np.ndarray, points: Sequence[tuple[float, float]], value: bool = True) -> Rect | None:
    """Fill a polygon (also the lasso) into ``mask``; only its bounding box is rasterised."""
    if not points:
        return None
    pts = np.asarray(points, dtype=np.float64)
    rect = clip_rect(
        (
            int(np.floor(pts[:, 0].min())),
            int(np.floor(pts[:, 1].min())),
            int(np.ceil(pts[:, 0].max())) + 1,
            int(np.ceil(pts[:, 1].max())) + 1,
        ),
        mask.shape,
    )
    if rect is None:
        return None
    x0, y0, x1, y1 = rect
    local = [(px - x0, py - y0) for px, py in pts]
    poly = rasterize_polygon((y1 - y0, x1 - x0), local)
    if not poly.any():
        return None
    mask[y0:y1, x0:x1][poly] = bool(value)
    return rect


lasso = fill_polygon


def flood_region(mask: np.ndarray, x: int, y: int) -> np.ndarray | None:
    """Bool map of the 4-connected region of pixels equal to mask[y, x] (PIL's C flood fill)."""
    from PIL import Image, ImageDraw

    h, w = mask.shape
    x, y = int(x), int(y)
    if not (0 <= x < w and 0 <= y < h):
        return None
    img = Image.frombytes("L", (w, h), np.ascontiguousarray(mask, dtype=np.uint8).tobytes())
    ImageDraw.floodfill(img, (x, y), 2, thresh=0)
    return np.asarray(img) == 2


def flood_fill(mask: np.ndarray, x: int, y: int, value: bool = True) -> Rect | None:
    """Fill the 4-connected region of equal pixels containing (x, y) with ``value``.

    Typical use: the user drew a closed outline and clicks inside it.
    """
    h, w = mask.shape
    if not (0 <= int(x) < w and 0 <= int(y) < h) or bool(mask[int(y), int(x)]) == bool(value):
        return None
    region = flood_region(mask, x, y)
    rect = bbox(region)
    mask[region] = bool(value)
    return rect


# ---- codecs ---------------------------------------------------------------------------
def encode_png(mask: np.ndarray) -> bytes:
    """1-bit PNG of a bool mask (full image size)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(mask, dtype=bool)).convert("1").save(buf, format="PNG")
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """Bool mask from PNG bytes (1-bit, or 8-bit where > 127 is inside)."""
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    if img.mode == "1":
        return np.array(img, dtype=bool)
    return np.asarray(img.convert("L")) > 127


def rle_encode(mask: np.ndarray) -> list[int]:
    """Run lengths in row-major order, starting with a run of False (possibly 0)."""
    flat = np.asarray(mask, dtype=bool).ravel()
    if flat.size == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat[0] else runs


def rle_decode(runs: Iterable[int], shape: tuple[int, int]) -> np.ndarray:
    runs = np.asarray(list(runs), dtype=np.int64)
    values = np.arange(runs.size) % 2 == 1
    flat = np.repeat(values, runs)
    if flat.size != shape[0] * shape[1]:
        raise ValueError(f"RLE covers {flat.size} pixels, shape {shape} needs {shape[0] * shape[1]}")
    return flat.reshape(shape)


def coco_rle(mask: np.ndarray) -> dict:
    """COCO uncompressed RLE (column-major, starting with zeros)."""
    return {
        "size": [int(mask.shape[0]), int(mask.shape[1])],
        "counts": rle_encode(np.asarray(mask, dtype=bool).T),
    }


def coco_rle_decode(rle: dict) -> np.ndarray:
    h, w = rle["size"]
    return rle_decode(rle["counts"], (w, h)).T.copy()


# ---- measurements ---------------------------------------------------------------------
def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Andrew's monotone chain on integer/float 2-D points (N, 2) -> hull vertices."""
    pts = np.unique(points, axis=0)
    if len(pts) <= 2:
        return pts
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]

    def half(seq):
        out: list = []
        for p in seq:
            while len(out) >= 2:
                (ax, ay), (bx, by) = out[-2], out[-1]
                if (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax) <= 0:
                    out.pop()
                else:
                    break
            out.append((float(p[0]), float(p[1])))
        return out

    lower, upper = half(pts), half(pts[::-1])
    return np.array(lower[:-1] + upper[:-1])


def max_feret(mask: np.ndarray, spacing_row: float = 1.0, spacing_col: float = 1.0) -> float:
    """Longest diameter (max Feret) of the mask in physical units.

    Every foreground pixel is a square; its four corners are candidate extreme points.
    Corners are taken only from boundary pixels, scaled by the spacing, their convex
    hull computed and the largest pairwise distance among hull vertices returned.
    A single pixel of 1 x 1 mm therefore measures sqrt(2) mm.
    """
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return 0.0
    box = bbox(m)
    x0, y0, x1, y1 = box
    sub = m[y0:y1, x0:x1]
    pad = np.pad(sub, 1)
    interior = pad[1:-1, 1:-1] & pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    ys, xs = np.nonzero(sub & ~interior)
    corners = np.concatenate([np.stack([xs + dx, ys + dy], axis=1) for dx in (0, 1) for dy in (0, 1)]).astype(
        np.float64
    )
    corners[:, 0] *= spacing_col
    corners[:, 1] *= spacing_row
    hull = _convex_hull(corners)
    if len(hull) == 1:
        return 0.0
    d = hull[:, None, :] - hull[None, :, :]
    return float(np.sqrt((d**2).sum(-1)).max())


def measure(mask: np.ndarray, spacing_row: float | None, spacing_col: float | None) -> dict:
    """bbox, area in pixels, and (when the spacing is known) longest diameter and area in mm."""
    m = np.asarray(mask, dtype=bool)
    area = int(m.sum())
    out = {"bbox": bbox(m), "area_px": area, "longest_mm": None, "area_mm2": None}
    if spacing_row and spacing_col:
        out["area_mm2"] = float(area * spacing_row * spacing_col)
        out["longest_mm"] = max_feret(m, spacing_row, spacing_col)
    return out


def iou_dice(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """IoU and Dice of two bool masks; two empty masks agree perfectly (1, 1)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    inter = int(np.logical_and(a, b).sum())
    sa, sb = int(a.sum()), int(b.sum())
    union = sa + sb - inter
    if union == 0:
        return 1.0, 1.0
    return inter / union, 2 * inter / (sa + sb)

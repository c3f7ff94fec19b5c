"""Region of interest: a square around a lesion (mask or box) with a margin, padded at borders.

Used by the classifier and retrieval to look at the lesion rather than the whole film.
Rectangles are ``(x0, y0, x1, y1)`` with exclusive ends, in the pixel grid of the
array being cropped; ``scale_rect`` maps a full-DICOM rectangle onto the analysis cache.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

MARGIN = 0.15


def square_roi(
    rect: Sequence[float], margin: float = MARGIN, *, min_side: int = 8
) -> tuple[int, int, int, int]:
    """A square centred on ``rect``: side = long side * (1 + 2 * margin), at least ``min_side``.

    The square may reach outside the image; ``crop_roi`` pads it.
    """
    x0, y0, x1, y1 = (float(v) for v in rect)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = max(min_side, math.ceil(max(x1 - x0, y1 - y0) * (1 + 2 * margin)))
    sx0, sy0 = math.floor(cx - side / 2), math.floor(cy - side / 2)
    return sx0, sy0, sx0 + side, sy0 + side


def crop_roi(
    image: np.ndarray, rect: Sequence[float], margin: float = MARGIN, *, fill: float = 0.0, min_side: int = 8
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Crop the square ROI around ``rect``; parts outside the image are ``fill`` (air).

    Returns the crop (same dtype, square) and the square in image coordinates.
    """
    sq = square_roi(rect, margin, min_side=min_side)
    x0, y0, x1, y1 = sq
    h, w = image.shape[:2]
    out = np.full((y1 - y0, x1 - x0) + image.shape[2:], fill, dtype=image.dtype)
    ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if ix0 < ix1 and iy0 < iy1:
        out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = image[iy0:iy1, ix0:ix1]
    return out, sq


def mask_rect(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    from mskstudio.imaging.masks import bbox

    return bbox(mask)


def crop_mask_roi(image: np.ndarray, mask: np.ndarray, margin: float = MARGIN, *, fill: float = 0.0):
    """ROI around a mask given at the image's own size; None when the mask is empty."""
    rect = mask_rect(mask)
    return None if rect is None else crop_roi(image, rect, margin, fill=fill)


def scale_rect(
    rect: Sequence[float], from_shape: tuple[int, int], to_shape: tuple[int, int]
) -> tuple[float, ...]:
    """Map a rectangle from one pixel grid (rows, cols) to another (e.g. DICOM -> analysis)."""
    sy, sx = to_shape[0] / from_shape[0], to_shape[1] / from_shape[1]
    x0, y0, x1, y1 = rect
    return (x0 * sx, y0 * sy, x1 * sx, y1 * sy)


def image_roi_rect(project, image_id: int, shape: tuple[int, int]) -> tuple[float, ...] | None:
    """The image's region of interest on an array of ``shape`` (the analysis cache): the union
    of its masks' bounding boxes and its boxes, which are stored on the full DICOM grid.
    None when the image has neither. The one rule the classifier and retrieval share."""
    rects = [rect for _, rect in project.annotations.roi_rects(image_id)]
    if not rects:
        return None
    a = np.asarray(rects, dtype=float)
    union = (a[:, 0].min(), a[:, 1].min(), a[:, 2].max(), a[:, 3].max())
    return scale_rect(union, project.images.record(image_id).shape, shape)

"""A model's probability map kept beside its mask: 8-bit greyscale PNG, 0-255 for 0-1.

255 levels are what a FRACTIONAL DICOM SEG holds (MaximumFractionalValue 255), so the
stored map exports without a second rounding.
"""

from __future__ import annotations

import io

import numpy as np


def encode_probability(prob: np.ndarray) -> bytes:
    """Float probabilities in [0, 1] (image-sized) -> 8-bit PNG bytes."""
    from PIL import Image

    levels = np.round(np.clip(np.asarray(prob, np.float32), 0.0, 1.0) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(levels, mode="L").save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def decode_probability(data: bytes) -> np.ndarray:
    """8-bit PNG bytes -> uint8 levels (0-255)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("L"), dtype=np.uint8)


def levels_agreeing_with(levels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Levels nudged so that ``level / 255 > 0.5`` is exactly ``mask``.

    The stored mask came from the model's own threshold (not always 0.5) on unrounded
    probabilities; a reader of a FRACTIONAL SEG thresholds at 0.5.  Pixels where the two
    disagree move to the nearest level on the mask's side (128 or 127), so the export
    reads back as the stored mask and elsewhere keeps the model's probability."""
    out = np.asarray(levels, np.uint8).copy()
    mask = np.asarray(mask, bool)
    out[mask & (out < 128)] = 128
    out[~mask & (out > 127)] = 127
    return out

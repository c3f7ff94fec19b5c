"""Fold ensemble with test-time augmentation: every fold model sees the image and its mirror,
and the boxes of all passes are fused into one set per image.

Fusion (``fusion``):

* ``"wbf"`` — weighted box fusion (Solovyev et al. 2021, the ``ensemble-boxes`` package): boxes
  of different passes that overlap (IoU > ``iou_thr``) are averaged, weighted by score, and the
  fused score is the mean over *all* passes, so a box one pass in ten found keeps a tenth of its
  score.  Good when the folds agree on where a lesion is but not on its edges.
* ``"nms"`` — non-maximum suppression over the pooled boxes (the seed study's choice): the best
  box survives with its own score.

Coordinates are square (letterbox) pixels throughout; ``Letterbox.to_full`` maps them back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mskstudio.ml.detect.model import nms

FUSIONS = ("wbf", "nms")
Pass = tuple[np.ndarray, np.ndarray]  # (boxes [K, 4], scores [K]) of one image from one pass


def flip_boxes(boxes: np.ndarray, size: int) -> np.ndarray:
    """Boxes of a horizontally mirrored square, back in the original square's coordinates."""
    out = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    out[:, [0, 2]] = size - out[:, [2, 0]]
    return out


def _nonempty(boxes: np.ndarray, scores: np.ndarray) -> Pass:
    """Drop boxes that clipping to the square left without area (WBF would warn and skip them)."""
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[keep], scores[keep]


def fuse(passes: Sequence[Pass], size: int, *, fusion: str = "wbf", iou_thr: float = 0.55,
         skip_thr: float = 0.0) -> Pass:
    """One image's boxes of several passes fused into one set (falling score)."""
    if fusion not in FUSIONS:
        raise ValueError(f"unknown box fusion {fusion!r} ({', '.join(FUSIONS)})")
    passes = [_nonempty(np.asarray(b, np.float32).reshape(-1, 4), np.asarray(s, np.float32).reshape(-1))
              for b, s in passes]
    if len(passes) == 1:
        b, s = passes[0]
        order = np.argsort(-s, kind="stable")
        return b[order], s[order]
    if fusion == "nms":
        b = np.concatenate([p[0] for p in passes])
        s = np.concatenate([p[1] for p in passes])
        keep = nms(b, s, iou_thr) if len(b) else np.zeros(0, np.int64)
        return b[keep], s[keep]
    from ensemble_boxes import weighted_boxes_fusion

    if not any(len(p[1]) for p in passes):
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    boxes_list = [np.clip(p[0] / size, 0.0, 1.0).tolist() for p in passes]
    scores_list = [p[1].tolist() for p in passes]
    labels_list = [[0] * len(p[1]) for p in passes]
    b, s, _ = weighted_boxes_fusion(boxes_list, scores_list, labels_list, iou_thr=iou_thr,
                                    skip_box_thr=skip_thr, conf_type="avg")
    order = np.argsort(-s, kind="stable")
    return (np.asarray(b, np.float32).reshape(-1, 4) * size)[order], np.asarray(s, np.float32)[order]


def ensemble_detect(raws: Sequence[Callable[[Any], Any]], batch, decoder: Callable[..., Pass], size: int,
                    *, tta: bool = True, fusion: str = "wbf", iou_thr: float = 0.55) -> list[Pass]:
    """Fused boxes of every image in ``batch`` ([B, 1, S, S] tensor) over models x (image, mirror).

    ``raws``: callables batch -> (cls, reg, ctr) numpy arrays; ``decoder(cls, reg, ctr)`` -> Pass."""
    per_image: list[list[Pass]] = [[] for _ in range(len(batch))]
    views = [(False, batch)] + ([(True, batch.flip(-1))] if tta else [])
    for raw in raws:
        for flipped, x in views:
            cls, reg, ctr = raw(x)
            for k in range(len(batch)):
                b, s = decoder(cls[k], reg[k], ctr[k])
                per_image[k].append((flip_boxes(b, size) if flipped else b, s))
    return [fuse(p, size, fusion=fusion, iou_thr=iou_thr) for p in per_image]

"""Segmentation data: preprocessing geometry, training masks, patient splits, augmentation, loss.

Preprocessing as in the seed study: crop the background (rows/cols darker than a
threshold at the film edges), pad to a square, resize; ``Geometry`` remembers the crop
and the letterbox so a prediction maps back onto the full DICOM grid.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from mskstudio.store import Project

SOURCE_ORDER = ("adjudicated", "human", "import")


# ---- preprocessing ------------------------------------------------------------------------
@dataclass
class Geometry:
    """Full grid (rows, cols) -> analysis grid -> crop -> letterboxed square of ``size``."""

    full: tuple[int, int]
    analysis: tuple[int, int]
    crop: tuple[int, int, int, int]  # x0, y0, x1, y1 in the analysis grid
    size: int

    @property
    def scale(self) -> float:
        x0, y0, x1, y1 = self.crop
        return self.size / max(x1 - x0, y1 - y0)

    @property
    def placed(self) -> tuple[int, int, int, int]:
        """top, left, height, width of the crop inside the square."""
        x0, y0, x1, y1 = self.crop
        nh, nw = max(1, round((y1 - y0) * self.scale)), max(1, round((x1 - x0) * self.scale))
        return (self.size - nh) // 2, (self.size - nw) // 2, nh, nw


def background_crop(
    image: np.ndarray, threshold: float = 0.02, min_frac: float = 0.25
) -> tuple[int, int, int, int]:
    """Box of rows/cols that hold anything brighter than ``threshold`` (air is ~0)."""
    h, w = image.shape
    on = image > threshold
    rows, cols = np.flatnonzero(on.any(1)), np.flatnonzero(on.any(0))
    if rows.size == 0 or (rows[-1] - rows[0] + 1) < min_frac * h or (cols[-1] - cols[0] + 1) < min_frac * w:
        return 0, 0, w, h
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bool mask to another (rows, cols) grid: area-weighted, > 0.5 is inside."""
    if mask.shape == tuple(shape):
        return mask.astype(bool)
    from PIL import Image

    img = Image.fromarray(mask.astype(np.uint8) * 255).resize((shape[1], shape[0]), Image.BILINEAR)
    return np.asarray(img) > 127


def _resize_float(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(a, np.float32))[None, None]
    antialias = shape[0] < a.shape[0]
    return F.interpolate(t, size=shape, mode="bilinear", align_corners=False, antialias=antialias)[
        0, 0
    ].numpy()


def prepare(
    image: np.ndarray,
    mask: np.ndarray | None,
    size: int,
    *,
    full: tuple[int, int] | None = None,
    threshold: float = 0.02,
) -> tuple[np.ndarray, np.ndarray | None, Geometry]:
    """Analysis image (+ mask at any grid) -> square float image, square float mask, geometry."""
    crop = background_crop(image, threshold)
    geom = Geometry(full=tuple(full or image.shape), analysis=image.shape, crop=crop, size=size)
    x0, y0, x1, y1 = crop
    top, left, nh, nw = geom.placed
    sq = np.zeros((size, size), np.float32)
    sq[top : top + nh, left : left + nw] = np.clip(_resize_float(image[y0:y1, x0:x1], (nh, nw)), 0, 1)
    msq = None
    if mask is not None:
        m = resize_mask(mask, image.shape)[y0:y1, x0:x1].astype(np.float32)
        msq = np.zeros((size, size), np.float32)
        msq[top : top + nh, left : left + nw] = _resize_float(m, (nh, nw)) > 0.5
    return sq, msq, geom


def unprepare(prob: np.ndarray, geom: Geometry, threshold: float = 0.5) -> np.ndarray:
    """Square probability map -> bool mask on the full DICOM grid."""
    return unprepare_probability(prob, geom) > threshold


def unprepare_probability(prob: np.ndarray, geom: Geometry) -> np.ndarray:
    """Square probability map -> float probabilities on the full DICOM grid (0 outside the crop)."""
    top, left, nh, nw = geom.placed
    x0, y0, x1, y1 = geom.crop
    part = _resize_float(prob[top : top + nh, left : left + nw], (y1 - y0, x1 - x0))
    ana = np.zeros(geom.analysis, np.float32)
    ana[y0:y1, x0:x1] = part
    return _resize_float(ana, geom.full) if tuple(geom.full) != tuple(geom.analysis) else ana


# ---- data -----------------------------------------------------------------------------------
def training_masks(project: Project, class_name: str | None = None) -> dict[int, np.ndarray]:
    """image id -> union of its lesion masks from the best source present (adjudicated > human > import)."""
    ann = project.annotations
    rows = ann.all_masks()
    best: dict[int, str] = {}
    for r in rows:
        if r.source in SOURCE_ORDER and (class_name is None or r.class_name == class_name):
            cur = best.get(r.image_id)
            if cur is None or SOURCE_ORDER.index(r.source) < SOURCE_ORDER.index(cur):
                best[r.image_id] = r.source
    out: dict[int, np.ndarray] = {}
    for r in rows:
        if best.get(r.image_id) == r.source and (class_name is None or r.class_name == class_name):
            m = ann.load_mask(r.id)
            out[r.image_id] = out[r.image_id] | m if r.image_id in out else m
    return out


def patient_split(
    patients: dict[int, int], val_fraction: float, test_fraction: float, seed: int
) -> dict[int, str]:
    """patient id -> 'train' | 'val' | 'test' (at least one patient each when there are 3+)."""
    ids = sorted(set(patients.values()))
    random.Random(seed).shuffle(ids)
    n = len(ids)
    n_test = max(1, round(n * test_fraction)) if n >= 3 else 0
    n_val = max(1, round(n * val_fraction)) if n >= 3 else 0
    part = {}
    for i, p in enumerate(ids):
        part[p] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return part


def images_by_part(ids: list[int], patients: dict[int, int], part: dict[int, str]) -> dict[str, list[int]]:
    """Image ids of each part ('train', 'val', 'test') of a patient split, in ``ids`` order;
    every image goes where its patient went, so no patient is in two parts."""
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for i in ids:
        out[part[patients[i]]].append(i)
    return out


def patient_folds(patients: dict[int, int], folds: int, seed: int) -> list[dict[int, str]]:
    """k patient folds: fold i tests group i, validates on group i+1, trains on the rest."""
    ids = sorted(set(patients.values()))
    random.Random(seed).shuffle(ids)
    groups = [ids[i::folds] for i in range(folds)]
    out = []
    for i in range(folds):
        part = {p: "train" for p in ids}
        part.update({p: "val" for p in groups[(i + 1) % folds]})
        part.update({p: "test" for p in groups[i]})
        out.append(part)
    return out


class JointAugment:
    """Affine (strong rotation and scale, shift, shear), flips on image+mask; contrast/gamma on the image."""

    def __init__(
        self,
        rotation: float = 45.0,
        scale: tuple[float, float] = (0.7, 1.4),
        shift: float = 0.1,
        hflip: float = 0.5,
        vflip: float = 0.2,
        contrast: float = 0.3,
        gamma: float = 0.3,
        rng: random.Random | None = None,
    ):
        self.rotation, self.scale, self.shift = rotation, scale, shift
        self.hflip, self.vflip, self.contrast, self.gamma = hflip, vflip, contrast, gamma
        self.rng = rng or random

    def __call__(self, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import torch
        import torchvision.transforms.v2.functional as TF
        from torchvision.transforms import InterpolationMode

        r = self.rng
        both = torch.cat([x, m], 0)
        size = x.shape[-1]
        both = TF.affine(
            both,
            angle=r.uniform(-self.rotation, self.rotation),
            translate=[r.uniform(-self.shift, self.shift) * size for _ in range(2)],
            scale=math.exp(r.uniform(math.log(self.scale[0]), math.log(self.scale[1]))),
            shear=[r.uniform(-8, 8)],
            interpolation=InterpolationMode.BILINEAR,
            fill=0.0,
        )
        if r.random() < self.hflip:
            both = TF.horizontal_flip(both)
        if r.random() < self.vflip:
            both = TF.vertical_flip(both)
        x, m = both[:1], (both[1:] > 0.5).float()
        x = x.clamp(0, 1) ** math.exp(r.uniform(-self.gamma, self.gamma))
        c = 1 + r.uniform(-self.contrast, self.contrast)
        mean = x.mean()
        return ((x - mean) * c + mean).clamp(0, 1), m


class SegDataset:
    def __init__(self, images: np.ndarray, masks: np.ndarray, augment: JointAugment | None = None):
        self.images, self.masks, self.augment = images, masks, augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        import torch

        x = torch.from_numpy(self.images[i].astype(np.float32) / 65535.0)[None]
        m = torch.from_numpy(self.masks[i].astype(np.float32))[None]
        if self.augment is not None:
            x, m = self.augment(x, m)
        return x, m


# ---- loss and metrics -------------------------------------------------------------------------
def dice_bce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    eps: float = 1.0,
    *,
    pos_weight: float | None = None,
    batch_dice: bool = True,
) -> torch.Tensor:
    """BCE (optionally up-weighting lesion pixels) + soft Dice loss.

    ``batch_dice`` pools the Dice over the batch, which keeps tiny lesions (0.1 % of an
    image) from being swamped by the smoothing term of per-image Dice.
    """
    import torch
    import torch.nn.functional as F

    pw = None if not pos_weight else torch.tensor(float(pos_weight), device=logits.device)
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw)
    p = logits.sigmoid().flatten(1)
    t = target.flatten(1)
    if batch_dice:
        dice = (2 * (p * t).sum() + eps) / (p.sum() + t.sum() + eps)
        return bce + (1 - dice)
    dice = (2 * (p * t).sum(1) + eps) / (p.sum(1) + t.sum(1) + eps)
    return bce + (1 - dice).mean()


def iou_dice_batch(pred: np.ndarray, target: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-image IoU and Dice of bool arrays [N, H, W]; empty vs empty counts as 1."""
    from mskstudio.imaging.masks import iou_dice

    pairs = [iou_dice(p, t) for p, t in zip(pred, target, strict=True)]
    return [a for a, _ in pairs], [b for _, b in pairs]


# ---- model run bookkeeping (train-seg and train-seg-box) ----------------------------------
def store_finished_run(project: Project, run_id: int, checkpoint: dict, metrics: dict,
                       part: dict[int, str]) -> None:
    """Checkpoint blob, metrics, the patient split (patient -> part) and status 'done'."""
    import io
    import json

    import torch

    buf = io.BytesIO()
    torch.save(checkpoint, buf)
    project.models.set_checkpoint(run_id, project.blobs.put_bytes(buf.getvalue()), metrics=metrics)
    project.models.set_fields(run_id, split=json.dumps({str(k): v for k, v in part.items()}, sort_keys=True))
    project.models.set_status(run_id, "done")


def mark_stopped(project: Project, run_id: int, exc: BaseException) -> None:
    """A run that did not finish: 'cancelled' when the user asked, else 'error'."""
    from mskstudio.jobs import Cancelled

    project.models.set_status(run_id, "cancelled" if isinstance(exc, Cancelled) else "error")


def run_minutes(t0: float, cpu0: float) -> dict[str, float]:
    """CPU minutes of this process (all its threads) and wall minutes since (t0, cpu0): on a
    shared machine wall time mostly measures the neighbours, so both are kept."""
    import time

    return {"cpu_minutes": round((time.process_time() - cpu0) / 60, 2),
            "wall_minutes": round((time.time() - t0) / 60, 2)}

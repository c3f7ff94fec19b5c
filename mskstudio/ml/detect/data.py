"""Detector data: the project's lesion boxes, the letterbox geometry, and augmented batches.

Ground truth of an image = its human / imported boxes plus the bounding box of every human,
imported or adjudicated mask that no box already covers (IoU > 0.5): a surgeon who outlined a
lesion has also boxed it.  Predicted boxes (rows with a score) and model masks never count.
Boxes live on the full DICOM grid; the network sees the 16-bit analysis cache letterboxed to
``size`` (``datasets.letterbox``), and ``Letterbox`` maps rectangles between the two exactly.

Images with no box and no mask are lesion-free (``negatives=True``): right for a project whose
surgeons reviewed every film (the phantom demo); pass ``image_ids`` to train on reviewed images
only otherwise.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.io.analysis import load_analysis
from mskstudio.ml.datasets import letterbox

if TYPE_CHECKING:
    from mskstudio.jobs import JobContext
    from mskstudio.store import Project

TRUTH_MASK_SOURCES = ("human", "import", "adjudicated")  # boxes and masks that count as ground truth


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [N, M] of (x0, y0, x1, y1) boxes (continuous coordinates, no +1)."""
    a = np.asarray(a, float).reshape(-1, 4)
    b = np.asarray(b, float).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def truth_boxes(project: Project, image_ids: Sequence[int] | None = None,
                class_name: str | None = None, *, classes_out: dict[int, list[str]] | None = None
                ) -> tuple[dict[int, np.ndarray], int | None]:
    """image id -> [K, 4] full-grid lesion boxes (K may be 0), and the class id they carry most.
    ``classes_out`` (a dict), if given, receives image id -> the K boxes' class names, in order."""
    ids = [int(i) for i in (image_ids if image_ids is not None else project.images.ids())]
    wanted = set(ids)
    out: dict[int, list] = {i: [] for i in ids}
    names: dict[int, list[str]] = {i: [] for i in ids}
    classes: dict[int, int] = {}
    for b in project.annotations.all_boxes():  # human-drawn and imported boxes (no predictions)
        if b.source not in TRUTH_MASK_SOURCES:
            continue  # e.g. the box of a model mask: a model's guess is no ground truth
        if b.image_id in wanted and (class_name is None or b.class_name == class_name):
            out[b.image_id].append((b.x0, b.y0, b.x1, b.y1))
            names[b.image_id].append(b.class_name)
            classes[b.class_id] = classes.get(b.class_id, 0) + 1
    for m in project.annotations.all_masks():
        if m.image_id not in wanted or m.source not in TRUTH_MASK_SOURCES:
            continue
        if class_name is not None and m.class_name != class_name:
            continue
        rect = m.bbox
        if rect is None:
            continue
        have = out[m.image_id]
        if have and box_iou(np.asarray(rect, float), np.asarray(have, float)).max() > 0.5:
            continue
        have.append(tuple(float(v) for v in rect))
        names[m.image_id].append(m.class_name)
        classes[m.class_id] = classes.get(m.class_id, 0) + 1
    if classes_out is not None:
        classes_out.update(names)
    main_class = max(classes, key=classes.get) if classes else None
    return {i: np.asarray(v, np.float32).reshape(-1, 4) for i, v in out.items()}, main_class


@dataclass(frozen=True)
class Letterbox:
    """Where the full DICOM grid (rows x cols) lands in the ``size`` square."""

    rows: int
    cols: int
    size: int
    top: int
    left: int
    nh: int
    nw: int

    @classmethod
    def of(cls, rows: int, cols: int, analysis_shape: tuple[int, int], size: int) -> Letterbox:
        h, w = analysis_shape  # the same arithmetic as datasets.letterbox
        scale = size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        return cls(int(rows), int(cols), int(size), (size - nh) // 2, (size - nw) // 2, nh, nw)

    def to_square(self, rects: np.ndarray) -> np.ndarray:
        r = np.asarray(rects, np.float32).reshape(-1, 4).copy()
        r[:, [0, 2]] = r[:, [0, 2]] * (self.nw / self.cols) + self.left
        r[:, [1, 3]] = r[:, [1, 3]] * (self.nh / self.rows) + self.top
        return r

    def to_full(self, rects: np.ndarray) -> np.ndarray:
        r = np.asarray(rects, np.float32).reshape(-1, 4).copy()
        r[:, [0, 2]] = np.clip((r[:, [0, 2]] - self.left) * (self.cols / self.nw), 0, self.cols)
        r[:, [1, 3]] = np.clip((r[:, [1, 3]] - self.top) * (self.rows / self.nh), 0, self.rows)
        return r


class DetImages:
    """Every image letterboxed once (uint16 in memory) with its boxes in square pixels."""

    def __init__(self, project: Project, ids: Sequence[int], truth: dict[int, np.ndarray], size: int,
                 ctx: JobContext | None = None):
        self.ids = [int(i) for i in ids]
        self.size = int(size)
        self.index = {i: k for k, i in enumerate(self.ids)}
        self.squares = np.empty((len(self.ids), self.size, self.size), np.uint16)
        self.geometry: dict[int, Letterbox] = {}
        self.boxes: dict[int, np.ndarray] = {}
        for k, i in enumerate(self.ids):
            if ctx is not None and k % 16 == 0:
                ctx.check_cancelled()
                ctx.progress(k / max(1, len(self.ids)), f"letterboxing {k}/{len(self.ids)}")
            rows, cols = project.images.record(i).shape
            array = load_analysis(project, i)
            self.squares[k] = np.round(letterbox(array, self.size) * 65535.0)
            g = Letterbox.of(rows, cols, array.shape, self.size)
            self.geometry[i] = g
            self.boxes[i] = g.to_square(truth.get(i, np.zeros((0, 4), np.float32)))

    @classmethod
    def from_arrays(cls, ids: Sequence[int], squares: np.ndarray, boxes: dict[int, np.ndarray]) -> DetImages:
        """The training view of rank > 0 of a distributed run: letterboxed squares (memory-mapped
        from the snapshot) and boxes in square pixels, no project and no geometry."""
        self = cls.__new__(cls)
        self.ids = [int(i) for i in ids]
        self.size = int(squares.shape[1])
        self.index = {i: k for k, i in enumerate(self.ids)}
        self.squares, self.geometry = squares, {}
        self.boxes = {int(i): np.asarray(b, np.float32).reshape(-1, 4) for i, b in boxes.items()}
        return self

    def square(self, image_id: int) -> np.ndarray:
        return self.squares[self.index[int(image_id)]].astype(np.float32) / 65535.0

    def batch(self, image_ids: Sequence[int]):
        import torch

        return torch.from_numpy(np.stack([self.square(i) for i in image_ids])[:, None])


class RadiographAugment:
    """Augmentation suited to radiographs and boxes: horizontal flip, small zoom with shift,
    brightness/contrast and gamma.  No rotation: a rotated box is a looser box."""

    def __init__(self, size: int, *, hflip: float = 0.5, zoom: tuple[float, float] = (0.85, 1.15),
                 brightness: float = 0.08, contrast: float = 0.2, gamma: float = 0.2, seed: int = 0):
        self.size, self.hflip, self.zoom = size, hflip, zoom
        self.brightness, self.contrast, self.gamma = brightness, contrast, gamma
        self.rng = random.Random(seed)

    def __call__(self, x: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch
        import torch.nn.functional as F

        r, s = self.rng, self.size
        boxes = boxes.copy()
        if r.random() < self.hflip:
            x = x[:, ::-1]
            boxes[:, [0, 2]] = s - boxes[:, [2, 0]]
        z = r.uniform(*self.zoom)
        n = max(8, round(s * z))
        if n != s:
            t = torch.from_numpy(np.ascontiguousarray(x))[None, None]
            y = F.interpolate(t, size=(n, n), mode="bilinear", antialias=True, align_corners=False)[0, 0].numpy()
            # shift so the zoomed image still covers (zoom in) or sits inside (zoom out) the square
            dx, dy = r.randint(min(0, s - n), max(0, s - n)), r.randint(min(0, s - n), max(0, s - n))
            canvas = np.zeros((s, s), np.float32)
            sx0, sy0 = max(0, -dx), max(0, -dy)
            tx0, ty0 = max(0, dx), max(0, dy)
            w, h = min(n - sx0, s - tx0), min(n - sy0, s - ty0)
            canvas[ty0:ty0 + h, tx0:tx0 + w] = y[sy0:sy0 + h, sx0:sx0 + w]
            x = canvas
            f = n / s
            old = boxes * f + np.asarray([dx, dy, dx, dy], np.float32)
            clipped = np.clip(old, 0, s)
            area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
            keep = area(clipped) >= 0.4 * np.maximum(area(old), 1e-6)
            boxes = clipped[keep]
        x = np.ascontiguousarray(x, dtype=np.float32)
        c = 1.0 + r.uniform(-self.contrast, self.contrast)
        b = r.uniform(-self.brightness, self.brightness)
        m = float(x.mean())
        x = np.clip((x - m) * c + m + b, 0.0, 1.0)
        if self.gamma:
            x = x ** float(np.exp(r.uniform(-self.gamma, self.gamma)))
        keep = ((boxes[:, 2] - boxes[:, 0]) >= 1) & ((boxes[:, 3] - boxes[:, 1]) >= 1)
        return x.astype(np.float32), boxes[keep].astype(np.float32)


def lesion_crop(x: np.ndarray, boxes: np.ndarray, crop: int, rng: random.Random,
                p_lesion: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    """A ``crop`` x ``crop`` window of the square ``x`` and the boxes it keeps (clipped; a box
    keeps its place when >= 40 % of it stays inside).  With probability ``p_lesion`` the window
    holds a random lesion of the image, else it lies anywhere.

    Why: the network is fully convolutional, so training on windows of the letterboxed square
    costs (crop / size)^2 of a whole-image step while lesions keep their size in pixels; most of
    a radiograph is air or plain bone, and lesion windows give the few positive FCOS locations of
    a small lesion far more gradient steps per CPU minute.  Inference still sees the whole square.
    """
    s = x.shape[0]
    if crop >= s:
        return x, boxes
    hi = s - crop
    if len(boxes) and rng.random() < p_lesion:
        b = boxes[rng.randrange(len(boxes))]
        # window positions that keep the lesion's centre at least 1/8 of a window from the edge
        cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        m = crop / 8
        x0 = rng.uniform(max(0.0, cx - crop + m), min(float(hi), max(0.0, cx - m)))
        y0 = rng.uniform(max(0.0, cy - crop + m), min(float(hi), max(0.0, cy - m)))
        x0, y0 = int(min(max(x0, 0), hi)), int(min(max(y0, 0), hi))
    else:
        x0, y0 = rng.randint(0, hi), rng.randint(0, hi)
    window = np.ascontiguousarray(x[y0:y0 + crop, x0:x0 + crop])
    old = boxes - np.asarray([x0, y0, x0, y0], np.float32)
    clipped = np.clip(old, 0, crop)
    area = lambda r: (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])  # noqa: E731
    keep = area(clipped) >= 0.4 * np.maximum(area(old), 1e-6)
    return window, clipped[keep].astype(np.float32)


class TrainSet:
    """torch Dataset view: (image [1, S, S], target {boxes, labels}) of some image ids; with
    ``crop`` the image is a ``crop`` x ``crop`` window of the square (``lesion_crop``)."""

    def __init__(self, images: DetImages, ids: Sequence[int], augment: RadiographAugment | None,
                 crop: int | None = None, seed: int = 0):
        self.images, self.ids, self.augment = images, [int(i) for i in ids], augment
        self.crop = int(crop) if crop and int(crop) < images.size else None
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, k: int) -> tuple[Any, dict]:
        import torch

        i = self.ids[k]
        x, boxes = self.images.square(i), self.images.boxes[i]
        if self.augment is not None:
            x, boxes = self.augment(x, boxes)
        if self.crop is not None:
            x, boxes = lesion_crop(x, boxes, self.crop, self.rng)
        target = {"boxes": torch.from_numpy(boxes.reshape(-1, 4).astype(np.float32)),
                  "labels": torch.zeros(len(boxes), dtype=torch.int64)}
        return torch.from_numpy(np.ascontiguousarray(x))[None], target


def collate(batch):
    return [b[0] for b in batch], [b[1] for b in batch]

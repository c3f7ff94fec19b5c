"""Box-prompted lesion segmentation: a U-Net that segments inside a square ROI around a box.

Whole-image segmentation at 128-256 px leaves a lesion a few pixels wide; tumour tools
therefore segment in two stages.  Here a surgeon's box (or the box of a coarse whole-image
prediction, see ``segment_cascade``) is turned into the project's ROI square
(``roi.square_roi``: long side + 15 % margin each way, padded with air at the borders),
the square is cut from the *full-resolution* pixels and resized to ``crop`` px, and the
network sees two channels: the crop (z-scored within the crop) and the box (1 inside).
The probability map goes back onto the full DICOM grid through the same square.

Jobs (``JOB_KINDS``):

* ``train-seg-box``  ``run_train_box_seg(project, params, ctx)``: same masks and the same
  patient split as ``train-seg`` (``patient_split`` on the patients of the masked images,
  same seed), so a coarse model and a box model trained with one seed share their
  held-out patients.  Each epoch draws ``samples_per_image`` boxes per training image,
  the ground-truth box with every edge jittered (a surgeon's loose or tight box), plus
  flips, 90° turns, gamma/contrast and noise.  Dice + BCE.  The held-out score is measured
  on the full grid, beside two baselines measured on the same boxes: the filled box and
  Otsu's threshold inside the box.  Stored as a ``model_runs`` row of kind ``box-segmenter``.

Public API for the GUI ("fill box with model"): ``segment_in_box``, and the job
``fill-boxes`` (``run_fill_boxes``) that writes the result as a model mask.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.io.analysis import load_analysis
from mskstudio.ml import roi
from mskstudio.ml.segment.data import _resize_float
from mskstudio.ml.segment.params import FillBoxesParams, TrainBoxSegParams

if TYPE_CHECKING:
    from mskstudio.store import Project

MODEL_KIND = "box-segmenter"
# The defaults of job train-seg-box are TrainBoxSegParams' (ml/segment/params.py), defined once.
DEFAULTS: dict[str, Any] = TrainBoxSegParams().to_json()
MIN_SIDE = 16  # full-grid pixels: a box smaller than this still gets a 16 px square of context


# ---- geometry -------------------------------------------------------------------------------------
Rect = tuple[float, float, float, float]


def jitter_box(box: Rect, rng: random.Random, lo: float, hi: float) -> Rect:
    """Move every edge of ``box`` by U(lo, hi) x its side (outward when positive)."""
    x0, y0, x1, y1 = box
    w, h = max(1.0, x1 - x0), max(1.0, y1 - y0)
    return (
        x0 - rng.uniform(lo, hi) * w,
        y0 - rng.uniform(lo, hi) * h,
        x1 + rng.uniform(lo, hi) * w,
        y1 + rng.uniform(lo, hi) * h,
    )


def grow_box(box: Rect, fraction: float) -> Rect:
    """Every edge moved outward by ``fraction`` x the box side."""
    x0, y0, x1, y1 = box
    dx, dy = fraction * (x1 - x0), fraction * (y1 - y0)
    return (x0 - dx, y0 - dy, x1 + dx, y1 + dy)


def mask_box(mask: np.ndarray) -> Rect | None:
    """Box (x0, y0, x1, y1), exclusive ends, around a mask; None when empty."""
    rect = roi.mask_rect(mask)
    return None if rect is None else tuple(float(v) for v in rect)


def box_square(box: Rect, margin: float = roi.MARGIN) -> tuple[int, int, int, int]:
    """The ROI square around a box on the full grid (the project's one ROI rule)."""
    return roi.square_roi(box, margin, min_side=MIN_SIDE)


@dataclass
class Pixels:
    """Pixels to cut ROIs from, and how the full DICOM grid maps onto them."""

    image: np.ndarray  # float32 [0, 1], bone bright
    full: tuple[int, int]  # rows, cols of the DICOM grid (where boxes and masks live)

    def to_source(self, rect: Sequence[float]) -> tuple[int, int, int, int]:
        x0, y0, x1, y1 = roi.scale_rect(rect, self.full, self.image.shape)
        return round(x0), round(y0), max(round(x0) + 1, round(x1)), max(round(y0) + 1, round(y1))


def load_pixels(project: Project, image_id: int) -> Pixels:
    """Full-resolution pixels (the DICOM, windowed as the analysis cache is), else the cache.

    The cache (long side 512) would leave a small lesion a few dozen pixels wide; one decode
    of a medium radiograph costs ~20 ms."""
    from mskstudio.io.dicom import DicomReadError, read_radiograph

    image = project.images.record(image_id)
    full = image.shape
    try:
        rad = read_radiograph(project.images.dicom_path(image_id), frame=image.frame)
        image = rad.normalised(rad.auto_window(0.5, 99.5)).astype(np.float32)
        if image.shape == full:
            return Pixels(image, full)
    except (OSError, ValueError, KeyError, DicomReadError):
        pass  # no readable file (e.g. a moved source folder): the cache is the best we have
    return Pixels(load_analysis(project, image_id), full)


def crop_input(pixels: Pixels, square: Sequence[int], box: Rect, size: int) -> np.ndarray:
    """[2, size, size] float32: the square (z-scored) and the box channel (1 inside)."""
    crop, _ = roi.crop_roi(pixels.image, pixels.to_source(square), margin=0.0, min_side=1)
    x = _resize_float(crop, (size, size))
    x = (x - x.mean()) / (x.std() + 0.02)
    sx0, sy0, sx1, _ = square
    f = size / (sx1 - sx0)
    b = np.zeros((size, size), np.float32)
    bx0, by0 = max(0, math.floor((box[0] - sx0) * f)), max(0, math.floor((box[1] - sy0) * f))
    bx1, by1 = min(size, math.ceil((box[2] - sx0) * f)), min(size, math.ceil((box[3] - sy0) * f))
    b[by0:by1, bx0:bx1] = 1.0
    return np.stack([x, b]).astype(np.float32)


def crop_target(mask: np.ndarray, square: Sequence[int], size: int) -> np.ndarray:
    """The full-grid mask cut to ``square`` and resized to ``size`` (bool)."""
    crop, _ = roi.crop_roi(mask.astype(np.float32), square, margin=0.0, min_side=1)
    return _resize_float(crop, (size, size)) > 0.5


def paste_prob(prob: np.ndarray, square: Sequence[int], full: tuple[int, int]) -> np.ndarray:
    """A [size, size] probability map of ``square`` placed on the full grid (0 elsewhere)."""
    x0, y0, x1, y1 = square
    up = _resize_float(prob, (y1 - y0, x1 - x0))
    out = np.zeros(full, np.float32)
    ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(full[1], x1), min(full[0], y1)
    if ix0 < ix1 and iy0 < iy1:
        out[iy0:iy1, ix0:ix1] = up[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
    return out


# ---- inference ------------------------------------------------------------------------------------
def predict_flips(model, x, device=None) -> np.ndarray:
    """Sigmoid [N, S, S] of inputs [N, C, S, S], averaged over the four flips the model trained
    on (test-time augmentation: four forward passes of a 96 px crop cost milliseconds)."""
    import torch

    model.eval()
    x = torch.as_tensor(x).to(device or "cpu")
    total = 0
    with torch.no_grad():
        for dims in ((), (-1,), (-2,), (-2, -1)):
            y = model(x.flip(dims) if dims else x).sigmoid()
            total = total + (y.flip(dims) if dims else y)
    return (total / 4)[:, 0].cpu().numpy()


def box_probability(model, ckpt: dict, pixels: Pixels, box: Rect, device=None) -> np.ndarray:
    """Lesion probability on the full grid for one box (0 outside its ROI square)."""
    square = box_square(box, ckpt.get("margin", roi.MARGIN))
    prob = predict_flips(model, crop_input(pixels, square, box, ckpt["crop"])[None], device)[0]
    return paste_prob(prob, square, pixels.full)


def segment_box(model, ckpt: dict, pixels: Pixels, box: Rect, device=None) -> np.ndarray:
    """Bool lesion mask on the full grid inside one box (largest component kept)."""
    mask = box_probability(model, ckpt, pixels, box, device) > ckpt.get("threshold", 0.5)
    return largest_component(mask)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """A box holds one lesion: drop the specks a threshold leaves beside it."""
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, n + 1))
    return labels == int(np.argmax(sizes)) + 1


_LOADED: dict[tuple[str, int], tuple[Any, dict]] = {}


def load_box_segmenter(project: Project, run_id: int):
    """(model in eval mode on the CPU, checkpoint) of a box-segmenter run; cached per run."""
    key = (str(project.root), int(run_id))
    if key not in _LOADED:
        from mskstudio.ml.models import load_checkpoint
        from mskstudio.ml.segment.unet import build_segmenter

        ckpt = load_checkpoint(project, run_id)
        model = build_segmenter(ckpt["arch"], in_channels=ckpt.get("in_channels", 2))
        model.load_state_dict(ckpt["state_dict"])
        _LOADED.clear()  # one model at a time: they are 50-100 MB each
        _LOADED[key] = (model.eval(), ckpt)
    return _LOADED[key]


def latest_box_segmenter(project: Project) -> int | None:
    done = [r for r in project.models.list(MODEL_KIND) if r["status"] == "done" and r["checkpoint_sha"]]
    return int(done[0]["id"]) if done else None


def segment_in_box(project: Project, run_id: int | None, image_id: int, box_xyxy: Sequence[float]) -> np.ndarray:
    """Lesion mask (bool, the image's full DICOM grid) inside a box drawn on that grid.

    ``box_xyxy`` is (x0, y0, x1, y1) in full-grid pixels (exclusive ends, as stored boxes);
    ``run_id`` None takes the latest finished box-segmenter.  Runs in ~0.1 s on a CPU
    (decode + one 96 px forward pass): call it from a worker, not the GUI thread.
    """
    run_id = run_id if run_id is not None else latest_box_segmenter(project)
    if run_id is None:
        raise ValueError("no finished box-segmenter run; train one first (train-seg --box)")
    model, ckpt = load_box_segmenter(project, run_id)
    return segment_box(model, ckpt, load_pixels(project, image_id), tuple(float(v) for v in box_xyxy))


def run_fill_boxes(project: Project, params: dict[str, Any], ctx) -> dict[str, Any]:
    """Job ``fill-boxes``: segment inside the boxes of one image ("fill box with model").

    params: ``FillBoxesParams`` (``image_id``; optional ``box_ids``, ``class_id``,
    ``model_run_id``, default the latest box model).
    Writes one ``model`` mask per box class (the union over its boxes; it replaces the
    image's earlier model proposal of that class, as pre-labelling does) and returns their
    ids; the surgeon accepts or edits them."""
    q = FillBoxesParams.from_json(params).check(project)
    image_id = int(q.image_id)
    run_id = q.model_run_id or latest_box_segmenter(project)
    boxes = project.annotations.boxes_of(image_id)
    if q.box_ids:
        wanted = {int(b) for b in q.box_ids}
        boxes = [b for b in boxes if b.id in wanted]
    if q.class_id is not None:
        boxes = [b for b in boxes if b.class_id == int(q.class_id)]
    if not boxes:
        raise ValueError(f"image {image_id} has no box to fill: draw one with the Box tool (X)")
    model, ckpt = load_box_segmenter(project, int(run_id))
    pixels = load_pixels(project, image_id)
    by_class: dict[int, np.ndarray] = {}
    for b in ctx.steps(boxes, "segmenting box {i}/{n}"):
        mask = segment_box(model, ckpt, pixels, b.rect)
        cid = int(b.class_id)
        by_class[cid] = by_class[cid] | mask if cid in by_class else mask
    mask_ids = {cid: project.annotations.save_mask(
        image_id, cid, mask, annotator="model", source="model", run_id=int(run_id),
        action="mask.predict", details={"boxes": [int(b.id) for b in boxes if b.class_id == cid]})
        for cid, mask in by_class.items()}
    return {"image_id": image_id, "run_id": int(run_id), "boxes": len(boxes),
            "masks": {str(c): m for c, m in mask_ids.items()},
            "pixels": {str(c): int(m.sum()) for c, m in by_class.items()}}


# ---- training data ----------------------------------------------------------------------------------
@dataclass
class Lesion:
    """One training image around its lesion: a context window cut from full-res pixels."""

    image: np.ndarray  # float32 context window (source resolution, capped)
    mask: np.ndarray  # float32 0/1 on the same window
    origin: tuple[float, float]  # full-grid x, y of the window's top-left
    scale: float  # window pixels per full-grid pixel
    box: Rect  # ground-truth box on the full grid
    full: tuple[int, int]


def cut_lesion(pixels: Pixels, mask: np.ndarray, crop: int, reach: float = 2.0) -> Lesion | None:
    """A window ``reach`` x the ROI square around the mask, stored at <= 3 x ``crop`` px."""
    box = mask_box(mask)
    if box is None:
        return None
    sq = box_square(box)
    side = (sq[2] - sq[0]) * reach
    cx, cy = (sq[0] + sq[2]) / 2, (sq[1] + sq[3]) / 2
    window = (math.floor(cx - side / 2), math.floor(cy - side / 2))
    window = (*window, window[0] + math.ceil(side), window[1] + math.ceil(side))
    img, _ = roi.crop_roi(pixels.image, pixels.to_source(window), margin=0.0, min_side=1)
    m, _ = roi.crop_roi(mask.astype(np.float32), window, margin=0.0, min_side=1)
    n = min(3 * crop, window[2] - window[0])
    img, m = _resize_float(img, (n, n)), _resize_float(m, (n, n))
    return Lesion(img, m, (float(window[0]), float(window[1])), n / (window[2] - window[0]), box, pixels.full)


def sample_crop(lesion: Lesion, box: Rect, crop: int) -> tuple[np.ndarray, np.ndarray]:
    """(input [2, crop, crop], target [crop, crop]) for a (jittered) box, from the window."""
    sq = box_square(box)
    ox, oy, s = lesion.origin[0], lesion.origin[1], lesion.scale
    local = (round((sq[0] - ox) * s), round((sq[1] - oy) * s))
    side = max(1, round((sq[2] - sq[0]) * s))
    local_sq = (*local, local[0] + side, local[1] + side)
    win = Pixels(lesion.image, lesion.image.shape)
    local_box = tuple(float((v - o) * s) for v, o in zip(box, (ox, oy, ox, oy), strict=True))
    x = crop_input(win, local_sq, local_box, crop)
    m, _ = roi.crop_roi(lesion.mask, local_sq, margin=0.0, min_side=1)
    return x, _resize_float(m, (crop, crop)) > 0.5


def augment_pair(x: np.ndarray, m: np.ndarray, rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """Flips, 90° turns (lossless, so no padded corners), gamma-like contrast and noise."""
    k = rng.randrange(4)
    x, m = np.rot90(x, k, axes=(1, 2)), np.rot90(m, k)
    if rng.random() < 0.5:
        x, m = x[:, :, ::-1], m[:, ::-1]
    img = x[0] * math.exp(rng.uniform(-0.3, 0.3)) + rng.uniform(-0.3, 0.3)
    img = img + rng.uniform(0, 0.15) * np.asarray(
        np.random.default_rng(rng.randrange(1 << 30)).standard_normal(img.shape), np.float32
    )
    return np.ascontiguousarray(np.stack([img, x[1]]), np.float32), np.ascontiguousarray(m)


class BoxCrops:
    """Torch dataset: ``samples_per_image`` jittered boxes per lesion, drawn afresh every epoch."""

    def __init__(self, lesions: list[Lesion], crop: int, per_image: int, jitter, augment: bool, seed: int):
        self.lesions, self.crop, self.per_image = lesions, crop, per_image
        self.jitter, self.augment, self.rng = tuple(jitter), augment, random.Random(seed)

    def __len__(self) -> int:
        return len(self.lesions) * self.per_image

    def __getitem__(self, i: int):
        import torch

        lesion = self.lesions[i % len(self.lesions)]
        box = jitter_box(lesion.box, self.rng, *self.jitter)
        x, m = sample_crop(lesion, box, self.crop)
        if self.augment:
            x, m = augment_pair(x, m, self.rng)
        return torch.from_numpy(x), torch.from_numpy(m[None].astype(np.float32))


def eval_boxes(ids: Sequence[int], masks: dict[int, np.ndarray], jitter, seed: int) -> dict[int, Rect]:
    """One fixed jittered ground-truth box per image (seeded): the same boxes for every method."""
    rng = random.Random(seed)
    return {i: jitter_box(mask_box(masks[i]), rng, *jitter) for i in ids}


# ---- baselines ------------------------------------------------------------------------------------
def clip_box(box: Rect, full: tuple[int, int]) -> tuple[int, int, int, int]:
    """The box rounded to whole pixels and clipped to the grid (may be empty)."""
    x0, y0, x1, y1 = (round(v) for v in box)
    x0, y0 = min(max(0, x0), full[1]), min(max(0, y0), full[0])
    return x0, y0, max(x0, min(x1, full[1])), max(y0, min(y1, full[0]))


def box_fill(full: tuple[int, int], box: Rect) -> np.ndarray:
    """Baseline: the box itself, filled."""
    out = np.zeros(full, bool)
    x0, y0, x1, y1 = clip_box(box, full)
    out[y0:y1, x0:x1] = True
    return out


def otsu_threshold(values: np.ndarray, bins: int = 128) -> float:
    """Otsu's threshold: the cut that maximises the between-class variance."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * centres)
    m0 = s0 / np.maximum(w0, 1)
    m1 = (s0[-1] - s0) / np.maximum(w1, 1)
    return float(edges[int(np.argmax(w0 * w1 * (m0 - m1) ** 2)) + 1])  # class 0 is <= this edge


def otsu_in_box(pixels: Pixels, box: Rect) -> np.ndarray:
    """Baseline: Otsu's threshold inside the box, keeping the side the box centre falls on."""
    x0, y0, x1, y1 = clip_box(box, pixels.full)
    out = np.zeros(pixels.full, bool)
    if x1 <= x0 or y1 <= y0:
        return out
    sx0, sy0, sx1, sy1 = pixels.to_source((x0, y0, x1, y1))
    vals = pixels.image[sy0:sy1, sx0:sx1]
    t = otsu_threshold(vals)
    centre = vals[vals.shape[0] // 2, vals.shape[1] // 2]
    cut = (vals > t) if centre > t else (vals <= t)
    out[y0:y1, x0:x1] = _resize_float(cut.astype(np.float32), (y1 - y0, x1 - x0)) > 0.5
    return largest_component(out)


# ---- cascade: whole-image localisation, then the box model inside each found region ---------------
def component_boxes(mask: np.ndarray, min_pixels: int = 1) -> list[Rect]:
    """Boxes (exclusive ends) around the connected components of a bool mask."""
    from scipy import ndimage

    labels, _ = ndimage.label(mask)
    boxes = []
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is not None and int((labels[sl] == k).sum()) >= min_pixels:
            boxes.append((float(sl[1].start), float(sl[0].start), float(sl[1].stop), float(sl[0].stop)))
    return boxes


def refine_mask(
    model, ckpt: dict, pixels: Pixels, coarse: np.ndarray, device=None, *, grow: float = 0.2, keep: float = 0.25
) -> np.ndarray:
    """Re-segment the main regions of a coarse whole-image mask, each inside its own box.

    A coarse mask (a 128-256 px square blown up to the full grid) is blocky, often smaller
    than the lesion and sometimes broken into specks: components under ``keep`` x the
    largest are dropped, and each kept box grows by ``grow`` x its side on every edge, as
    a loose box a surgeon would draw (the box model trained on such boxes)."""
    boxes = component_boxes(coarse)
    if not boxes:
        return np.zeros(pixels.full, bool)
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
    out = np.zeros(pixels.full, bool)
    for box, area in zip(boxes, areas, strict=True):
        if area >= keep * max(areas):
            out |= segment_box(model, ckpt, pixels, grow_box(box, grow), device)
    return out

"""Torch datasets over the 16-bit analysis cache.

Every image is letterboxed: the long side is resized to ``size`` (antialiased) and
the short side padded with 0 (air) to a ``size`` x ``size`` square, one channel,
float in [0, 1] (bone bright).  Normalisation (``models.normalise``) happens on the
batch, on the device, so the same dataset serves CPU and GPU.

``preload=True`` keeps the letterboxed squares in memory as uint16 (2 bytes a
pixel: 10,000 images at 224 px take 1 GB), which is what makes several passes per
epoch (DeepCluster extracts features, then trains) affordable on a laptop.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.io.analysis import load_analysis

if TYPE_CHECKING:
    import torch

    from mskstudio.store import Project

PRELOAD_LIMIT_BYTES = 3 << 30


def letterbox(array: np.ndarray, size: int) -> np.ndarray:
    """float32 [H, W] in [0, 1] -> float32 [size, size], aspect kept, padded with 0."""
    import torch
    import torch.nn.functional as F

    h, w = array.shape
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]
    if (nh, nw) != (h, w):
        t = F.interpolate(t, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    out = np.zeros((size, size), np.float32)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top:top + nh, left:left + nw] = t[0, 0].clamp(0, 1).numpy()
    return out


class Augment:
    """Random resized crop, flips, small rotation, contrast/brightness, on [1, S, S] tensors."""

    def __init__(self, size: int, *, scale: tuple[float, float] = (0.4, 1.0),
                 rotation_deg: float = 10.0, hflip: float = 0.5, vflip: float = 0.1,
                 contrast: float = 0.25, brightness: float = 0.1, rng: random.Random | None = None):
        self.size, self.scale, self.rotation = size, scale, rotation_deg
        self.hflip, self.vflip = hflip, vflip
        self.contrast, self.brightness = contrast, brightness
        # The module-level generator by default: DataLoader workers reseed it per worker.
        self.rng = rng or random

    def crop_box(self, h: int, w: int) -> tuple[int, int, int, int]:
        r = self.rng
        area = h * w
        for _ in range(10):
            target = area * r.uniform(*self.scale)
            ratio = math.exp(r.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                return r.randint(0, h - ch), r.randint(0, w - cw), ch, cw
        return 0, 0, h, w

    def __call__(self, x: torch.Tensor, mask: torch.Tensor | None = None):
        """Augmented x; with ``mask`` ([1, S, S]) also the mask, moved by the same geometry."""
        import torch
        import torchvision.transforms.v2.functional as TF

        r = self.rng
        if mask is not None:  # one tensor through the geometric steps keeps them aligned
            x = torch.cat([x, mask.to(x.dtype)])
        top, left, ch, cw = self.crop_box(x.shape[-2], x.shape[-1])
        x = TF.resized_crop(x, top, left, ch, cw, [self.size, self.size], antialias=True)
        if r.random() < self.hflip:
            x = TF.horizontal_flip(x)
        if r.random() < self.vflip:
            x = TF.vertical_flip(x)
        if self.rotation:
            x = TF.rotate(x, r.uniform(-self.rotation, self.rotation), fill=0.0)
        if mask is not None:
            x, mask = x[:1], x[1:].clamp(0.0, 1.0)
        c = 1.0 + r.uniform(-self.contrast, self.contrast)
        b = r.uniform(-self.brightness, self.brightness)
        mean = x.mean()
        x = ((x - mean) * c + mean + b).clamp_(0.0, 1.0)
        return x if mask is None else (x, mask)


class AnalysisDataset:
    """(image tensor [1, size, size], target) for a list of image ids.

    ``targets`` may be given (pseudo-labels, classes) and replaced later with
    ``set_targets``; without targets the image id is returned as the target.
    """

    def __init__(self, project: Project, image_ids: Sequence[int], size: int = 224, *,
                 augment: Augment | bool | None = None, targets: Sequence[int] | None = None,
                 preload: bool | None = None,
                 loader: Callable[[int], np.ndarray] | None = None):
        self.project = project
        self.ids = [int(i) for i in image_ids]
        self.size = int(size)
        self.augment = Augment(self.size) if augment is True else (augment or None)
        self.targets = list(targets) if targets is not None else None
        self._load = loader or partial(load_analysis, project)
        if preload is None:
            preload = len(self.ids) * self.size * self.size * 2 <= PRELOAD_LIMIT_BYTES
        self._cache: np.ndarray | None = None
        self._preload = bool(preload)

    def __len__(self) -> int:
        return len(self.ids)

    def set_targets(self, targets: Sequence[int]) -> None:
        self.targets = [int(t) for t in targets]

    def preload(self, progress: Callable[[float], Any] | None = None,
                check: Callable[[], None] | None = None) -> None:
        """Letterbox every image into memory now (progress 0..1, check raises on cancel)."""
        if self._cache is not None:
            return
        cache = np.empty((len(self.ids), self.size, self.size), np.uint16)
        for i in range(len(self.ids)):
            if check and i % 32 == 0:
                check()
            cache[i] = np.round(self.square(i) * 65535.0)
            if progress and (i % 64 == 0 or i == len(self.ids) - 1):
                progress((i + 1) / len(self.ids))
        self._cache = cache

    def square(self, index: int) -> np.ndarray:
        if self._cache is not None:
            return self._cache[index].astype(np.float32) / 65535.0
        return letterbox(self._load(self.ids[index]), self.size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        import torch

        x = torch.from_numpy(self.square(index))[None]
        if self.augment is not None:
            x = self.augment(x)
        target = self.targets[index] if self.targets is not None else self.ids[index]
        return x, int(target)

    def ensure_loaded(self, progress=None, check=None) -> None:
        if self._preload:
            self.preload(progress, check)


def make_loader(dataset: Any, *, batch_size: int, sampler: Any = None, shuffle: bool = False,
                workers: int = 0, device: torch.device | None = None, drop_last: bool = False):
    import torch

    cuda = device is not None and device.type == "cuda"
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, shuffle=shuffle and sampler is None,
        num_workers=workers, pin_memory=cuda, drop_last=drop_last,
        persistent_workers=False,
    )

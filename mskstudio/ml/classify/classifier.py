"""Classifier networks, input geometry (whole image or ROI crop) and saved ensembles.

* ``build_encoder(arch)``: the shared registry (``models.BACKBONES``: resnet18,
  resnet50) plus ``efficientnet_b0``, ``swin_t`` (torchvision) and ``tinycnn`` / ``smallcnn`` (a
  small CNN for tests and quick probes), all 1-channel, returning ``(encoder, dim)``.
* ``Classifier``: encoder + linear head; takes [B, 1, S, S] in [0, 1] and normalises
  itself, so callers (predict, Grad-CAM) never forget to.
* ``Geometry``: where the network input came from in the analysis array (the
  letterbox of the whole image, or of a square ROI crop) so heatmaps map back.
* ``load_ensemble(project, run_id)``: the fold models of a finished classifier run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import TYPE_CHECKING, Any

import numpy as np

from mskstudio.io.analysis import load_analysis
from mskstudio.ml.roi import MARGIN as ROI_MARGIN  # one margin for every ROI crop

if TYPE_CHECKING:
    import torch

    from mskstudio.store import Project

CHECKPOINT_FORMAT = "mskstudio-classifier-1"


# ---- architectures ------------------------------------------------------------------------
def _one_channel_first_conv(seq_holder: Any, attr_path: tuple) -> None:
    import torch.nn as nn

    parent = seq_holder
    for a in attr_path[:-1]:
        parent = parent[a] if isinstance(a, int) else getattr(parent, a)
    last = attr_path[-1]
    old = parent[last] if isinstance(last, int) else getattr(parent, last)
    new = nn.Conv2d(1, old.out_channels, kernel_size=old.kernel_size, stride=old.stride,
                    padding=old.padding, bias=old.bias is not None)
    if isinstance(last, int):
        parent[last] = new
    else:
        setattr(parent, last, new)


def _efficientnet_b0() -> tuple[Any, int]:
    import torch.nn as nn
    import torchvision

    net = torchvision.models.efficientnet_b0(weights=None)
    _one_channel_first_conv(net, ("features", 0, 0))
    dim = net.classifier[1].in_features
    net.classifier = nn.Identity()
    return net, dim


def _swin_t() -> tuple[Any, int]:
    import torch.nn as nn
    import torchvision

    net = torchvision.models.swin_t(weights=None)
    _one_channel_first_conv(net, ("features", 0, 0))
    dim = net.head.in_features
    net.head = nn.Identity()
    return net, dim


def _tinycnn() -> tuple[Any, int]:
    import torch.nn as nn

    def block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o),
                             nn.ReLU(inplace=True))

    net = nn.Sequential(block(1, 16), nn.MaxPool2d(2), block(16, 32), nn.MaxPool2d(2),
                        block(32, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return net, 64


def _smallcnn() -> tuple[Any, int]:
    """tinycnn with a fourth block after a third pooling: at 64 px its last block sees the
    whole film (tinycnn's sees a quarter), which is what anatomy — the demo's region task —
    needs; about 1.5x tinycnn's multiply-adds, still a few milliseconds per image on a CPU."""
    import torch.nn as nn

    def block(i, o):
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o),
                             nn.ReLU(inplace=True))

    net = nn.Sequential(block(1, 16), nn.MaxPool2d(2), block(16, 32), nn.MaxPool2d(2),
                        block(32, 64), nn.MaxPool2d(2), block(64, 128), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return net, 128


EXTRA_ENCODERS: dict[str, Callable[[], tuple[Any, int]]] = {
    "efficientnet_b0": _efficientnet_b0,
    "swin_t": _swin_t,
    "tinycnn": _tinycnn,
    "smallcnn": _smallcnn,
}


def architectures() -> list[str]:
    from mskstudio.ml.models import BACKBONES

    return [*BACKBONES, *EXTRA_ENCODERS]


def build_encoder(arch: str) -> tuple[torch.nn.Module, int]:
    from mskstudio.ml.models import BACKBONES, build_backbone

    if arch in BACKBONES:
        return build_backbone(arch)
    if arch in EXTRA_ENCODERS:
        return EXTRA_ENCODERS[arch]()
    raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(architectures())}")


def default_cam_layer(arch: str) -> str:
    """Dotted path (inside ``Classifier``) of the last convolutional stage."""
    if arch.startswith("resnet"):
        return "encoder.layer4"
    if arch.startswith("efficientnet"):
        return "encoder.features"
    if arch.startswith("swin"):
        return "encoder.norm"
    if arch == "tinycnn":
        return "encoder.4"
    if arch == "smallcnn":
        return "encoder.6"
    raise ValueError(f"no default Grad-CAM layer for {arch!r}; pass one")


CLINICAL_HIDDEN = 32  # width of the metadata MLP of a joint-fusion classifier


def _make_classifier_class():
    import torch
    import torch.nn as nn

    from mskstudio.ml.models import normalise

    class Classifier(nn.Module):
        """Encoder + linear head; with ``clinical_dim`` (joint fusion) a metadata MLP whose output
        is concatenated with the image features before the head.

        The clinical input is the run's raw encoded vector (``ml/fuse/features.py``: numbers
        on the model scale with NaN where missing, one-hot and missing-indicator columns);
        the fold's imputation values, means and scales are buffers fitted on the fold's
        training rows (``fit_clinical``), so they travel in the state dict, the checkpoint
        and the ONNX graph, and inference reproduces the training normalisation."""

        def __init__(self, arch: str, n_classes: int, clinical_dim: int = 0):
            super().__init__()
            self.arch = arch
            self.encoder, self.feature_dim = build_encoder(arch)
            self.clinical_dim = int(clinical_dim)
            # One case's clinical vector held fixed while a CAM method calls forward(x) alone.
            self.bound_clinical = None
            extra = 0
            if self.clinical_dim:
                self.register_buffer("clin_fill", torch.zeros(self.clinical_dim))
                self.register_buffer("clin_mean", torch.zeros(self.clinical_dim))
                self.register_buffer("clin_scale", torch.ones(self.clinical_dim))
                self.meta = nn.Sequential(nn.Linear(self.clinical_dim, CLINICAL_HIDDEN), nn.ReLU(),
                                          nn.Linear(CLINICAL_HIDDEN, CLINICAL_HIDDEN), nn.ReLU())
                extra = CLINICAL_HIDDEN
            self.head = nn.Linear(self.feature_dim + extra, n_classes)

        def fit_clinical(self, raw: np.ndarray) -> None:
            """Imputation (median), mean and scale (1/sd) from the training rows' raw vectors.
            A column constant in training (a category the fold never saw) gets scale 0: it
            cannot move a prediction it never learned from."""
            raw = np.asarray(raw, np.float64).reshape(-1, self.clinical_dim)
            fill = np.nan_to_num(np.nanmedian(np.where(np.isnan(raw).all(0), 0.0, raw), axis=0)) \
                if len(raw) else np.zeros(self.clinical_dim)
            x = np.where(np.isnan(raw), fill, raw)
            mean = x.mean(0) if len(x) else np.zeros(self.clinical_dim)
            sd = x.std(0) if len(x) else np.zeros(self.clinical_dim)
            scale = np.where(sd > 1e-8, 1.0 / np.maximum(sd, 1e-8), 0.0)
            for name, v in (("clin_fill", fill), ("clin_mean", mean), ("clin_scale", scale)):
                getattr(self, name).copy_(torch.as_tensor(v, dtype=torch.float32))

        def fuse(self, features, clinical=None):
            """Image features, with the metadata branch's output appended (joint fusion)."""
            if not self.clinical_dim:
                return features
            if clinical is None and self.bound_clinical is not None:  # one case, any batch of its views
                clinical = self.bound_clinical.expand(features.shape[0], -1)
            if clinical is None:
                raise ValueError("this classifier was trained with clinical data: pass the clinical vector")
            c = torch.where(torch.isnan(clinical), self.clin_fill, clinical)
            c = (c - self.clin_mean) * self.clin_scale
            return torch.cat([features, self.meta(c)], dim=1)

        def forward(self, x, clinical=None):
            return self.head(self.fuse(self.encoder(normalise(x)), clinical))

    return Classifier


@lru_cache(maxsize=1)
def _classifier_cls():
    return _make_classifier_class()


def make_classifier(arch: str, n_classes: int, clinical_dim: int = 0) -> torch.nn.Module:
    return _classifier_cls()(arch, n_classes, clinical_dim)


def model_inputs(batch_x, device) -> tuple:
    """A batch's network inputs: ``(image,)``, or ``(image, clinical)`` for a joint-fusion run
    (whose items are ``((image, clinical), target)``)."""
    if isinstance(batch_x, (list, tuple)):
        return tuple(t.to(device, non_blocking=True) for t in batch_x)
    return (batch_x.to(device, non_blocking=True),)


# ---- input geometry -------------------------------------------------------------------------
@dataclass(frozen=True)
class Geometry:
    """The square region (analysis-array pixels, may extend past the edges) fed to the net."""

    y0: int
    x0: int
    side_y: int
    side_x: int
    shape: tuple[int, int]  # analysis array (h, w)

    def crop(self, array: np.ndarray) -> np.ndarray:
        """Cut the region, padding with 0 (air) where it leaves the image."""
        h, w = array.shape
        out = np.zeros((self.side_y, self.side_x), np.float32)
        ys, xs = max(0, self.y0), max(0, self.x0)
        ye, xe = min(h, self.y0 + self.side_y), min(w, self.x0 + self.side_x)
        if ye > ys and xe > xs:
            out[ys - self.y0:ye - self.y0, xs - self.x0:xe - self.x0] = array[ys:ye, xs:xe]
        return out

    def to_analysis(self, square_map: np.ndarray) -> np.ndarray:
        """Map a [S, S] map over the letterboxed input back onto the analysis array."""
        import torch
        import torch.nn.functional as F

        s = square_map.shape[0]
        hh, ww = self.side_y, self.side_x
        scale = s / max(hh, ww)
        nh, nw = max(1, round(hh * scale)), max(1, round(ww * scale))
        top, left = (s - nh) // 2, (s - nw) // 2
        inner = torch.from_numpy(np.ascontiguousarray(square_map[top:top + nh, left:left + nw],
                                                      dtype=np.float32))[None, None]
        region = F.interpolate(inner, size=(hh, ww), mode="bilinear", align_corners=False)[0, 0].numpy()
        h, w = self.shape
        out = np.zeros((h, w), np.float32)
        ys, xs = max(0, self.y0), max(0, self.x0)
        ye, xe = min(h, self.y0 + hh), min(w, self.x0 + ww)
        if ye > ys and xe > xs:
            out[ys:ye, xs:xe] = region[ys - self.y0:ye - self.y0, xs - self.x0:xe - self.x0]
        return out


def geometry(project: Project, image_id: int, shape: tuple[int, int], mode: str = "image",
             margin: float = ROI_MARGIN) -> Geometry:
    """Whole image, or (``mode="roi"``) a square around the ROI plus ``margin`` each side.

    An image without a mask or box falls back to the whole image.
    """
    from mskstudio.ml.roi import image_roi_rect, square_roi

    h, w = shape
    if mode == "roi":
        rect = image_roi_rect(project, image_id, shape)
        if rect is not None:
            x0, y0, x1, y1 = square_roi(rect, margin)
            return Geometry(y0, x0, y1 - y0, x1 - x0, (h, w))
    elif mode != "image":
        raise ValueError(f"unknown input mode {mode!r} (image or roi)")
    return Geometry(0, 0, h, w, (h, w))


def input_loader(project: Project, mode: str = "image",
                 margin: float = ROI_MARGIN) -> Callable[[int], np.ndarray]:
    """image id -> float [H', W'] array the dataset letterboxes (whole image or ROI crop)."""
    if mode == "image":
        return partial(load_analysis, project)

    def load(image_id: int) -> np.ndarray:
        a = load_analysis(project, image_id)
        return geometry(project, image_id, a.shape, mode, margin).crop(a)

    return load


# ---- saved ensembles --------------------------------------------------------------------------
@dataclass
class Ensemble:
    """Fold models of one classifier (or one cascade stage) and what they were trained on."""

    arch: str
    size: int
    input_mode: str
    margin: float
    class_ids: list[int]
    class_names: list[str]
    models: list[Any]
    reject_index: int | None = None
    threshold: float | None = None  # max-softmax below this -> rejected
    clinical: dict[str, Any] | None = None  # joint fusion: fields and the encoder of the raw vector

    def logits(self, x: torch.Tensor, clinical: torch.Tensor | None = None) -> torch.Tensor:
        """Mean of the fold models' logits."""
        import torch

        return torch.stack([m(x, clinical) for m in self.models]).mean(0)

    def bind_clinical(self, project: Project, image_id: int) -> None:
        """Joint fusion: hold this image's clinical vector in every fold model, so that callers
        passing the image alone (Grad-CAM, the pointing game) explain the model as it predicts."""
        if not self.clinical:
            return
        import torch

        c = torch.from_numpy(self.clinical_vectors(project, [int(image_id)]))
        for m in self.models:
            m.bound_clinical = c

    def clinical_vectors(self, project: Project, image_ids) -> np.ndarray | None:
        """The raw clinical vectors of ``image_ids`` (joint fusion), None for an image-only run."""
        if not self.clinical:
            return None
        from mskstudio.ml.fuse.joint import clinical_vectors

        return clinical_vectors(project, image_ids, self.clinical)


def ensemble_from_dict(d: dict[str, Any]) -> Ensemble:
    models = []
    clinical = d.get("clinical")
    for state in d["folds"]:
        m = make_classifier(d["arch"], len(d["class_ids"]), len(clinical["columns"]) if clinical else 0)
        m.load_state_dict(state)
        models.append(m.eval())
    return Ensemble(d["arch"], int(d["size"]), d.get("input", "image"), float(d.get("margin", ROI_MARGIN)),
                    list(d["class_ids"]), list(d["class_names"]), models, d.get("reject_index"),
                    d.get("threshold"), clinical)


def load_run_checkpoint(project: Project, run_id: int) -> dict[str, Any]:
    from mskstudio.ml.models import load_checkpoint

    ckpt = load_checkpoint(project, run_id)
    if ckpt.get("format") != CHECKPOINT_FORMAT or ckpt.get("state") != "done":
        raise ValueError(f"model run {run_id} is not a finished classifier run")
    return ckpt


def load_ensemble(project: Project, run_id: int) -> dict[str, Any]:
    """{"kind": "flat", "main": Ensemble} or {"kind": "cascade", "stage1", "stage2", "healthy_*"}."""
    ckpt = load_run_checkpoint(project, run_id)
    out: dict[str, Any] = {"kind": ckpt.get("kind", "flat")}
    for key in ("main", "stage1", "stage2"):
        if key in ckpt:
            out[key] = ensemble_from_dict(ckpt[key])
    for key in ("healthy_class_id", "healthy_name", "cascade_threshold", "class_ids", "class_names"):
        if key in ckpt:
            out[key] = ckpt[key]
    return out

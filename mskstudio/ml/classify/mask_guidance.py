"""Mask-guided attention: teach a classifier to look where the surgeon drew the lesion.

A whole radiograph is mostly normal anatomy; a classifier trained on image labels alone
learns whatever separates the classes most cheaply (the anatomical site, the detector),
and its Grad-CAM shows it (issue 7's pointing game scored 0/51 without guidance).  Where
lesion masks exist, the training can be told where the evidence is, as in "Tell me where
to look" (GAIN, Li et al. 2018) and "Right for the right reasons" (Ross et al. 2017).

For the classifiers here (the CAM layer -> global average pooling -> linear head), the
class activation map of class c is ``w_c . A`` over the CAM layer's activations A, and
Grad-CAM is exactly ``ReLU(w_c . A) / (h w)``.  The guidance term is

    L_att = -log( sum_ij softmax(w_y . A)_ij * inside_ij )

for each training image of class y that has a mask, where ``inside`` is the share of
each CAM cell covered by the (augmented) mask.  It is the log-probability that the
CAM's peak lies on the lesion, so it pushes the Grad-CAM peak onto the lesion without
asking the network to reproduce the outline.  Images without a mask (healthy ones, a
patient's other films) are trained by cross-entropy alone.  The loss is
``CE + mask_guidance * L_att``; the held-out pointing game (``pointing.py``) then tells
whether the attention generalises to patients the model never saw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mskstudio.io.analysis import load_analysis

if TYPE_CHECKING:
    import torch

    from mskstudio.store import Project


def letterboxed_masks(project: Project, ids, size: int, input_mode: str, margin: float) -> dict[int, np.ndarray]:
    """image id -> uint8 [size, size] lesion mask in the classifier's input geometry (255 = lesion).

    Only images with a training mask (adjudicated > human > import) are returned; the
    mask goes through the same crop (``input_mode``) and letterbox as the pixels.
    """
    from mskstudio.ml.classify.classifier import geometry
    from mskstudio.ml.datasets import letterbox
    from mskstudio.ml.segment.data import resize_mask, training_masks

    masks = training_masks(project)
    out: dict[int, np.ndarray] = {}
    for image_id in ids:
        if image_id not in masks:
            continue
        shape = load_analysis(project, image_id).shape
        on_analysis = resize_mask(masks[image_id], shape).astype(np.float32)
        geo = geometry(project, image_id, shape, input_mode, margin)
        square = letterbox(geo.crop(on_analysis), size)
        if square.max() > 0:
            out[int(image_id)] = np.round(square * 255).astype(np.uint8)
    return out


class CamTap:
    """Forward hook that keeps the CAM layer's output ([B, C, h, w]) of the last forward."""

    def __init__(self, model, arch: str, layer: str | None = None):
        from mskstudio.ml.classify.classifier import default_cam_layer
        from mskstudio.ml.explain.gradcam import module_at, reshape_for

        self.reshape = reshape_for(arch) or (lambda t: t)
        self.output = None
        self.handle = module_at(model, layer or default_cam_layer(arch)).register_forward_hook(self._keep)

    def _keep(self, module, inputs, output):
        self.output = self.reshape(output)

    def remove(self) -> None:
        self.handle.remove()


def has_mask(masks: torch.Tensor) -> torch.Tensor:
    """[B] bool: which images of a [B, 1, S, S] mask batch have a lesion (all zero = none)."""
    return masks.flatten(1).amax(1) > 0


def attention_loss(acts: torch.Tensor, head_weight: torch.Tensor, targets: torch.Tensor,
                   masks: torch.Tensor) -> torch.Tensor:
    """Mean ``-log P(CAM peak on the lesion)`` over the images of the batch that have a mask.

    acts [B, C, h, w] (CAM layer), head_weight [K, C], targets [B], masks [B, 1, S, S] in
    [0, 1] (all zero for an image without a mask).  Returns 0 when no image has a mask.
    """
    import torch
    import torch.nn.functional as F

    guided = has_mask(masks)
    if not bool(guided.any()):
        return acts.new_zeros(()).float()
    a = acts[guided].float()
    cam = torch.einsum("bchw,bc->bhw", a, head_weight[targets[guided]].float())
    inside = F.adaptive_avg_pool2d(masks[guided].float(), cam.shape[-2:])[:, 0]
    log_p = torch.log_softmax(cam.flatten(1), dim=1)
    # log sum_ij p_ij * inside_ij, computed in log space; cells with no lesion add nothing.
    log_inside = torch.logsumexp(log_p + torch.log(inside.flatten(1).clamp_min(1e-6)), dim=1)
    return -log_inside.mean()


class AttentionMeter:
    """Mean attention loss over the masked images of many batches (the validation score)."""

    def __init__(self, tap: CamTap):
        self.tap, self.total, self.n = tap, 0.0, 0

    def add(self, head_weight: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor) -> None:
        """Score the batch the tapped model has just seen."""
        guided = int(has_mask(masks).sum())
        if guided:
            self.total += float(attention_loss(self.tap.output, head_weight, targets, masks)) * guided
            self.n += guided

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else float("nan")

"""The detector network: torchvision's FCOS on a 1-channel ResNet-FPN, and its decoding in numpy.

FCOS (Tian et al. 2019, torchvision's BSD implementation) is anchor-free: every feature-map
location of P3-P7 predicts a class logit, a centre-ness logit and four distances to the box
sides.  The backbone is the project's 1-channel ResNet (``ml.models``), so a DeepCluster run or
a classifier run can initialise it; nothing is downloaded (``weights=None`` throughout).

Inference in the product always goes through ``raw_outputs`` (network up to the head's raw
tensors) and ``decode`` (numpy: scores = sqrt(sigmoid(cls) x sigmoid(ctr)), per-level top-k,
box decoding, clipping, NMS), which is what the ONNX model and ONNX Runtime run too: torchvision's
post-processing does not export cleanly, so the exported graph stops at the raw head outputs and
the same numpy decoder finishes the job on both sides.  ``tests/unit/test_detect.py`` checks
the numpy decoder against torchvision's own ``postprocess_detections``.

Inputs are letterboxed squares of side ``size`` (a multiple of 32, so the FCOS transform neither
resizes nor pads), float in [0, 1], bone bright; normalisation uses ``models.INPUT_MEAN/STD``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

FPN_LAYERS = {"resnet18": [128, 256, 512], "resnet50": [512, 1024, 2048]}
STRIDES = (8, 16, 32, 64, 128)  # P3..P7


def build_detector(arch: str = "resnet18", *, size: int = 512, fpn_channels: int = 128,
                   score_thresh: float = 0.05, nms_thresh: float = 0.5, detections: int = 50,
                   head_convs: int = 4):
    """A fresh FCOS detector (one class: lesion) over the 1-channel backbone ``arch``.

    ``head_convs``: the 3x3 convolutions of each head branch before its output (FCOS: 4).  At
    512 px the head runs on a 64 x 64 P3 map, so 2 instead of 4 saves a fifth of the CPU time
    (tests/bench/bench_detect.py prints it)."""
    import torch.nn as nn
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.fcos import FCOSHead
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    from mskstudio.ml.models import INPUT_MEAN, INPUT_STD, build_backbone

    if arch not in FPN_LAYERS:
        raise ValueError(f"unknown detector backbone {arch!r}; known: {', '.join(FPN_LAYERS)}")
    if int(size) % 32 or int(size) < 64:
        raise ValueError(f"detector input size must be a multiple of 32 and at least 64, not {size}")
    if int(fpn_channels) % 32 or int(fpn_channels) < 64:  # the head's GroupNorm(32) needs >= 2 channels a group
        raise ValueError(f"detector FPN channels must be a multiple of 32 and at least 64, not {fpn_channels}")
    if not 1 <= int(head_convs) <= 4:
        raise ValueError(f"detector head convolutions must be 1 to 4, not {head_convs}")
    body, _ = build_backbone(arch)
    body.fc = nn.Identity()
    backbone = BackboneWithFPN(
        body, return_layers={"layer2": "0", "layer3": "1", "layer4": "2"},
        in_channels_list=FPN_LAYERS[arch], out_channels=int(fpn_channels),
        extra_blocks=LastLevelP6P7(int(fpn_channels), int(fpn_channels)))
    anchors = AnchorGenerator(sizes=tuple((s,) for s in STRIDES), aspect_ratios=((1.0,),) * len(STRIDES))
    head = FCOSHead(int(fpn_channels), 1, 1, num_convs=int(head_convs))
    return FCOS(backbone, num_classes=1, min_size=int(size), max_size=int(size), head=head,
                image_mean=[INPUT_MEAN], image_std=[INPUT_STD], anchor_generator=anchors,
                score_thresh=score_thresh, nms_thresh=nms_thresh, detections_per_img=detections,
                topk_candidates=1000)


def backbone_state(project, init: Any) -> dict | None:
    """Backbone weights to start from: None (scratch), ``run:ID`` (a DeepCluster run's backbone
    or a classifier run's fold-0 encoder) or a weights file path."""
    if init in (None, "", "scratch"):
        return None
    from mskstudio.ml.models import adapt_state_dict, load_checkpoint

    if isinstance(init, int) or (isinstance(init, str) and init.startswith("run:")):
        run_id = int(str(init).removeprefix("run:"))
        ckpt = load_checkpoint(project, run_id)
        if "backbone" in ckpt:
            return adapt_state_dict(ckpt["backbone"])
        main = ckpt.get("main") or {}
        if main.get("folds"):
            state = {k.removeprefix("encoder."): v for k, v in main["folds"][0].items()
                     if k.startswith("encoder.")}
            return adapt_state_dict(state)
        raise ValueError(f"model run {run_id} holds no backbone (a DeepCluster or classifier run is needed)")
    import torch

    obj = torch.load(str(init), map_location="cpu", weights_only=True)
    if isinstance(obj, dict):
        for key in ("backbone", "state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    return adapt_state_dict(obj)


def load_backbone_state(model, state: dict | None) -> list[str]:
    """Copy ``state`` into the detector's ResNet body; returns the body tensors it lacked."""
    if state is None:
        return []
    missing, _ = model.backbone.body.load_state_dict(state, strict=False)
    if len(missing) == len(model.backbone.body.state_dict()):
        raise ValueError("the initial weights do not fit the detector backbone (no tensor matched)")
    return list(missing)


class RawDetector:
    """Factory of a plain ``nn.Module``: [B, 1, S, S] in [0, 1] -> (cls [B, A, 1], reg [B, A, 4],
    ctr [B, A, 1]) — the exportable part of the detector."""

    @staticmethod
    def wrap(model):
        import torch.nn as nn

        from mskstudio.ml.models import INPUT_MEAN, INPUT_STD

        class _Raw(nn.Module):
            def __init__(self, det):
                super().__init__()
                self.backbone, self.head = det.backbone, det.head

            def forward(self, x):
                feats = list(self.backbone((x - INPUT_MEAN) / INPUT_STD).values())
                out = self.head(feats)
                return out["cls_logits"], out["bbox_regression"], out["bbox_ctrness"]

        return _Raw(model).eval()


def anchor_table(model, size: int) -> tuple[np.ndarray, list[int]]:
    """The fixed anchors [A, 4] of a ``size`` square and the anchors per level."""
    import torch
    from torchvision.models.detection.image_list import ImageList

    x = torch.zeros(1, 1, size, size)
    with torch.no_grad():
        feats = list(model.backbone(x).values())
        anchors = model.anchor_generator(ImageList(x, [(size, size)]), feats)[0]
    return anchors.numpy().astype(np.float32), [int(f.shape[-2] * f.shape[-1]) for f in feats]


def raw_outputs(raw, x: torch.Tensor, device=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import torch

    device = device or torch.device("cpu")
    with torch.no_grad(), torch.autocast(device.type, enabled=device.type == "cuda"):
        cls, reg, ctr = raw(x.to(device))
    return cls.float().cpu().numpy(), reg.float().cpu().numpy(), ctr.float().cpu().numpy()


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thr: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, by falling score (as torchvision.ops.nms)."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        xx0 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy0 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx1 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy1 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx1 - xx0, 0, None) * np.clip(yy1 - yy0, 0, None)
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_thr]
    return np.asarray(keep, dtype=np.int64)


def decode(cls: np.ndarray, reg: np.ndarray, ctr: np.ndarray, anchors: np.ndarray,
           per_level: list[int], size: int, *, score_thresh: float = 0.05, nms_thresh: float = 0.5,
           topk: int = 1000, detections: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """(boxes [K, 4] in square pixels, scores [K]) of one image's raw outputs ([A, 1], [A, 4], [A, 1]),
    FCOS's post-processing in numpy (same steps as torchvision's ``postprocess_detections``)."""
    boxes_out, scores_out = [], []
    start = 0
    for n in per_level:
        sl = slice(start, start + n)
        start += n
        scores = np.sqrt(_sigmoid(cls[sl, 0]) * _sigmoid(ctr[sl, 0]))
        idx = np.flatnonzero(scores > score_thresh)
        if idx.size > topk:
            idx = idx[np.argsort(-scores[idx], kind="stable")[:topk]]
        a, r = anchors[sl][idx], reg[sl][idx]
        cx, cy = (a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2
        w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
        b = np.stack([cx - r[:, 0] * w, cy - r[:, 1] * h, cx + r[:, 2] * w, cy + r[:, 3] * h], axis=1)
        boxes_out.append(np.clip(b, 0, size))
        scores_out.append(scores[idx])
    boxes = np.concatenate(boxes_out).astype(np.float32) if boxes_out else np.zeros((0, 4), np.float32)
    scores = np.concatenate(scores_out).astype(np.float32) if scores_out else np.zeros(0, np.float32)
    keep = nms(boxes, scores, nms_thresh)[:detections]
    return boxes[keep], scores[keep]

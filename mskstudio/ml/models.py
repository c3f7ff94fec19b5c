"""Backbone registry: stable string keys -> torchvision networks for 1-channel radiographs.

Input convention (shared by every job that uses these backbones):

* one channel: the 16-bit analysis cache as float in [0, 1], bone bright;
* normalised by the fixed constants ``INPUT_MEAN`` / ``INPUT_STD`` (``normalise``);
* the first convolution takes 1 channel.  A 3-channel weights file (e.g. ImageNet
  weights the user supplies) is adapted by summing the RGB kernels, which is what a
  grey image repeated to 3 channels would have seen.

``build_backbone(key)`` returns ``(backbone, feature_dim)`` where the backbone maps
``[B, 1, H, W]`` to the penultimate (global-average-pooled) features ``[B, feature_dim]``.
Keys stored in the database (``model_runs.arch``) never change meaning.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from mskstudio.store import Project

INPUT_MEAN = 0.5
INPUT_STD = 0.25
IN_CHANS = 1


def _resnet(name: str) -> Callable[[], tuple[Any, int]]:
    def build() -> tuple[Any, int]:
        import torch.nn as nn
        import torchvision

        net = getattr(torchvision.models, name)(weights=None)
        old = net.conv1
        net.conv1 = nn.Conv2d(IN_CHANS, old.out_channels, kernel_size=old.kernel_size,
                              stride=old.stride, padding=old.padding, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        dim = net.fc.in_features
        net.fc = nn.Identity()
        return net, dim

    return build


BACKBONES: dict[str, Callable[[], tuple[Any, int]]] = {
    "resnet18": _resnet("resnet18"),
    "resnet50": _resnet("resnet50"),
}


def build_backbone(arch: str) -> tuple[torch.nn.Module, int]:
    """A fresh (randomly initialised) backbone and its feature dimension."""
    try:
        return BACKBONES[arch]()
    except KeyError:
        raise ValueError(f"unknown backbone {arch!r}; known: {', '.join(BACKBONES)}") from None


def normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - INPUT_MEAN) / INPUT_STD


def adapt_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """Make a torchvision-style state dict fit our 1-channel, fc-less backbone."""
    state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}
    w = state.get("conv1.weight")
    if w is not None and w.ndim == 4 and w.shape[1] != IN_CHANS:
        state["conv1.weight"] = w.sum(dim=1, keepdim=True)
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def load_weights_file(backbone: torch.nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Load a user-supplied weights file (state dict or a checkpoint dict holding one)."""
    import torch

    obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    if isinstance(obj, dict):
        for key in ("backbone", "state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    missing, unexpected = backbone.load_state_dict(adapt_state_dict(obj), strict=False)
    return {"missing": list(missing), "unexpected": list(unexpected)}


def load_checkpoint(project: Project, model_run_id: int) -> dict[str, Any]:
    """The checkpoint dict of a model run (``arch``, ``backbone`` state, ``epoch`` …)."""
    import torch

    row = project.models.get(model_run_id)
    if row is None:
        raise ValueError(f"no model run {model_run_id}")
    if not row["checkpoint_sha"]:
        raise ValueError(f"model run {model_run_id} has no checkpoint yet")
    return torch.load(project.blobs.path(row["checkpoint_sha"]), map_location="cpu",
                      weights_only=False)


def load_backbone(project: Project, model_run_id: int) -> torch.nn.Module:
    """The backbone of a model run's checkpoint, in eval mode on the CPU.

    ``module.feature_dim`` and ``module.arch`` are set for the caller's convenience.
    """
    ckpt = load_checkpoint(project, model_run_id)
    backbone, dim = build_backbone(ckpt["arch"])
    backbone.load_state_dict(ckpt["backbone"])
    backbone.feature_dim = dim
    backbone.arch = ckpt["arch"]
    backbone.input_size = ckpt.get("input_size")
    return backbone.eval()


def pick_device(device: str | None = None) -> torch.device:
    import torch

    if device and device != "auto":
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")

"""U-Net and UNet++ with a ResNet encoder, 1-channel input, 1-channel logits out.

Registry keys (stored in ``model_runs.arch``, never change meaning):

* ``unet-resnet34``   U-Net, torchvision ResNet34 encoder (weights=None)
* ``unetpp-resnet34`` UNet++ (nested dense skips), same encoder
* ``unet-resnet18`` / ``unetpp-resnet18``  the same with a ResNet18 encoder, which is what a
  DeepCluster ``resnet18`` backbone initialises (``encoder_state``).
* ``unet-small``      a plain U-Net of 16 … 256 channels (no ResNet encoder), for ROI crops

``in_channels`` (default 1) widens the stem: the box-prompted ROI segmenter feeds the image
and a box channel (1 inside the surgeon's box, 0 outside).

Encoder features: stem /2 (64), layer1 /4 (64), layer2 /8 (128), layer3 /16 (256),
layer4 /32 (512) for both ResNet18 and ResNet34.  Inputs must be a multiple of 32.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

ENCODER_CHANNELS = (64, 64, 128, 256, 512)
DECODER_CHANNELS = (256, 128, 64, 32, 16)
UNETPP_CHANNELS = (32, 64, 128, 256)  # node width per level 0..3


def conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ResNetEncoder(nn.Module):
    def __init__(self, depth: int = 34, in_channels: int = 1):
        super().__init__()
        import torchvision

        net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.bn1, self.relu, self.maxpool = net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f0 = self.relu(self.bn1(self.conv1(x)))
        f1 = self.layer1(self.maxpool(f0))
        f2 = self.layer2(f1)
        f3 = self.layer3(f2)
        f4 = self.layer4(f3)
        return [f0, f1, f2, f3, f4]

    def load_backbone_state(self, state: dict[str, Any]) -> dict[str, list[str]]:
        """Initialise from a classification backbone state dict (``models.build_backbone`` layout)."""
        from mskstudio.ml.models import adapt_state_dict

        state = adapt_state_dict(state)
        extra = self.conv1.in_channels - state["conv1.weight"].shape[1] if "conv1.weight" in state else 0
        if extra > 0:  # the image channel keeps the pretrained kernels; extra channels start at zero
            w = state["conv1.weight"]
            state["conv1.weight"] = torch.cat([w, w.new_zeros((w.shape[0], extra) + w.shape[2:])], 1)
        missing, unexpected = self.load_state_dict(state, strict=False)
        return {"missing": list(missing), "unexpected": list(unexpected)}


def _up(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="nearest")


class UNet(nn.Module):
    def __init__(self, depth: int = 34, in_channels: int = 1):
        super().__init__()
        self.encoder = ResNetEncoder(depth, in_channels)
        e, d = ENCODER_CHANNELS, DECODER_CHANNELS
        self.dec3 = conv_block(e[4] + e[3], d[0])
        self.dec2 = conv_block(d[0] + e[2], d[1])
        self.dec1 = conv_block(d[1] + e[1], d[2])
        self.dec0 = conv_block(d[2] + e[0], d[3])
        self.final = conv_block(d[3], d[4])
        self.head = nn.Conv2d(d[4], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f0, f1, f2, f3, f4 = self.encoder(x)
        y = self.dec3(torch.cat([_up(f4, f3), f3], 1))
        y = self.dec2(torch.cat([_up(y, f2), f2], 1))
        y = self.dec1(torch.cat([_up(y, f1), f1], 1))
        y = self.dec0(torch.cat([_up(y, f0), f0], 1))
        y = self.final(F.interpolate(y, size=x.shape[-2:], mode="bilinear", align_corners=False))
        return self.head(y)


class UNetPlusPlus(nn.Module):
    """Nested U-Net: node X[i][j] sees every X[i][k<j] and the upsampled X[i+1][j-1]."""

    def __init__(self, depth: int = 34, in_channels: int = 1):
        super().__init__()
        self.encoder = ResNetEncoder(depth, in_channels)
        e, c = ENCODER_CHANNELS, UNETPP_CHANNELS
        self.nodes = nn.ModuleDict()
        for i in range(4):
            for j in range(1, 5 - i):
                below = e[i + 1] if j == 1 else c[i + 1] if i + 1 < 4 else e[4]
                cin = e[i] + (j - 1) * c[i] + below
                self.nodes[f"{i}_{j}"] = conv_block(cin, c[i])
        self.final = conv_block(c[0], 16)
        self.head = nn.Conv2d(16, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        grid: dict[tuple[int, int], torch.Tensor] = {(i, 0): f for i, f in enumerate(feats)}
        for j in range(1, 5):
            for i in range(0, 5 - j):
                same = [grid[(i, k)] for k in range(j)]
                below = _up(grid[(i + 1, j - 1)], same[0])
                grid[(i, j)] = self.nodes[f"{i}_{j}"](torch.cat(same + [below], 1))
        y = F.interpolate(grid[(0, 4)], size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.head(self.final(y))


class SmallUNet(nn.Module):
    """The classic U-Net at 1/16 of its width (16 … 256 channels, four halvings): ~1.9 M
    parameters, a few times cheaper than the ResNet encoders on a CPU — made for the
    box-prompted ROI crops, where the lesion fills the input.  Inputs a multiple of 16."""

    WIDTHS = (16, 32, 64, 128, 256)

    def __init__(self, in_channels: int = 1):
        super().__init__()
        w = self.WIDTHS
        self.down = nn.ModuleList(
            conv_block(c_in, c_out) for c_in, c_out in zip((in_channels,) + w[:-1], w, strict=True)
        )
        self.up = nn.ModuleList(conv_block(w[k + 1] + w[k], w[k]) for k in range(len(w) - 1))
        self.head = nn.Conv2d(w[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for k, block in enumerate(self.down):
            x = block(F.max_pool2d(x, 2) if k else x)
            skips.append(x)
        for k in reversed(range(len(self.up))):
            x = self.up[k](
                torch.cat(
                    [F.interpolate(x, size=skips[k].shape[-2:], mode="bilinear", align_corners=False), skips[k]], 1
                )
            )
        return self.head(x)


SEGMENTERS = {
    "unet-resnet34": lambda c: UNet(34, c),
    "unetpp-resnet34": lambda c: UNetPlusPlus(34, c),
    "unet-resnet18": lambda c: UNet(18, c),
    "unetpp-resnet18": lambda c: UNetPlusPlus(18, c),
    "unet-small": lambda c: SmallUNet(c),
}


def build_segmenter(arch: str, in_channels: int = 1) -> nn.Module:
    try:
        return SEGMENTERS[arch](in_channels)
    except KeyError:
        raise ValueError(f"unknown segmenter {arch!r}; known: {', '.join(SEGMENTERS)}") from None

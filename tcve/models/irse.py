"""IR-SE ResNet backbone (ArcFace-style "improved residual" blocks with squeeze-excitation) and the map2style head.

Module and parameter names follow the pSp family (eladrich/pixel2style2pixel ``models/encoders/helpers.py``,
reused unchanged by e4e and ReStyle), so their ``encoder.*`` state dicts load with ``strict=True``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .layers import EqualLinear

# (in_channel, depth, number of units) per stage; the first unit of each stage has stride 2.
IRSE_STAGES: dict[int, tuple[tuple[int, int, int], ...]] = {
    50: ((64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3)),
    100: ((64, 64, 3), (64, 128, 13), (128, 256, 30), (256, 512, 3)),
    152: ((64, 64, 3), (64, 128, 8), (128, 256, 36), (256, 512, 3)),
}


class SEModule(nn.Module):
    """Squeeze-excitation gate: x * sigmoid(fc2(relu(fc1(avgpool(x)))))."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, padding=0, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, padding=0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        return x * gate


class BottleneckIRSE(nn.Module):
    """BN -> conv3x3 -> PReLU -> conv3x3(stride) -> BN -> SE, plus a (strided) shortcut. [B,I,H,W] -> [B,D,H/s,W/s]."""

    def __init__(self, in_channel: int, depth: int, stride: int, use_se: bool = True):
        super().__init__()
        if in_channel == depth:
            # upstream's MaxPool2d(1, stride): plain subsampling, no parameters
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channel, depth, (1, 1), stride, bias=False),
                                                nn.BatchNorm2d(depth))
        layers: list[nn.Module] = [
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, (3, 3), (1, 1), 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, (3, 3), stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        ]
        if use_se:
            layers.append(SEModule(depth, 16))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


Stages = tuple[tuple[int, int, int], ...]


class IRSEBackbone(nn.Module):
    """``input_layer`` (conv3x3 -> BN -> PReLU) + ``body`` (the IR-SE units). [B,input_nc,H,W] -> [B,D,H/16,W/16].

    ``stages`` (in_channel, depth, units) per stage overrides the IR-SE ``num_layers`` table (small test/demo nets).
    """

    def __init__(self, input_nc: int = 3, num_layers: int = 50, use_se: bool = True, stages: Stages | None = None):
        super().__init__()
        if stages is None:
            if num_layers not in IRSE_STAGES:
                raise ValueError(f"num_layers must be one of {sorted(IRSE_STAGES)}, got {num_layers}")
            stages = IRSE_STAGES[num_layers]
        self.stages = tuple(tuple(int(v) for v in st) for st in stages)
        width = self.stages[0][0]  # 64 in IR-SE
        self.input_layer = nn.Sequential(nn.Conv2d(input_nc, width, (3, 3), 1, 1, bias=False),
                                         nn.BatchNorm2d(width), nn.PReLU(width))
        units: list[nn.Module] = []
        for in_channel, depth, n in self.stages:
            units.append(BottleneckIRSE(in_channel, depth, 2, use_se))
            units.extend(BottleneckIRSE(depth, depth, 1, use_se) for _ in range(n - 1))
        self.body = nn.Sequential(*units)


class GradualStyleBlock(nn.Module):
    """map2style: log2(spatial) stride-2 conv3x3 + LeakyReLU(0.01), then EqualLinear. [B,C,s,s] -> [B,out_c]."""

    def __init__(self, in_c: int, out_c: int, spatial: int):
        super().__init__()
        self.out_c = out_c
        layers: list[nn.Module] = []
        for i in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(in_c if i == 0 else out_c, out_c, kernel_size=3, stride=2, padding=1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_c, out_c, lr_mul=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).reshape(-1, self.out_c))


def upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """FPN merge: bilinear (align_corners=True, as upstream) resize of x to y's size, plus y."""
    return F.interpolate(x, size=y.shape[2:], mode="bilinear", align_corners=True) + y

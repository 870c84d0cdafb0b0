"""Deep Video Prior (Lei et al., NeurIPS 2020): the blind temporal-consistency baseline of the paper's Tables 1-2.

A randomly initialised U-Net is trained on one video only, to map each input frame to its processed frame (here: the
aligned input crop -> the direct edit). Because the same network serves every frame, it fits what the frames agree on
first and the per-frame flicker last; training stops early (a fixed number of epochs), and the network's outputs are
the consistent video.

Settings follow the official implementation's defaults (``dvp_video_consistency.py`` of ChenyangLEI/deep-video-prior,
without IRT): U-Net with 32 base channels and four 2x poolings (first conv 1x1, LeakyReLU 0.2, bilinear upsampling
followed by a linear 3x3 conv and a skip concatenation, Xavier-uniform weights, zero biases), frames in [0,1], Adam
with lr 1e-4, one frame per step visiting the frames in order, 25 epochs, and the "coarse to fine speed-up": epochs
before ``(epochs + 1) * 4 // 5`` train on frames subsampled by 2 (every other pixel). The official script's default
loss is a VGG-19 perceptual loss (ImageNet weights); its ``--loss l1`` option is used here (no download, and the
paper's comparison calls it the default setting without saying which loss); ``l2`` is offered as well.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

__all__ = ["DVPConfig", "DVPUNet", "DVPFit", "fit_dvp", "apply_dvp", "deep_video_prior"]

ProgressFn = Callable[[float, str], None]

_MULTIPLE = 32  # four poolings, and one more halving for the coarse epochs


@dataclass(frozen=True)
class DVPConfig:
    """Deep Video Prior settings. Defaults = the official script's (``--max_epoch 25``, Adam 1e-4, U-Net 32)."""

    epochs: int = 25
    lr: float = 1e-4
    loss: Literal["l1", "l2"] = "l1"
    width: int = 32                   # base channels of the U-Net (32 .. 512 over five levels)
    coarse_to_fine: bool = True       # official speed-up: early epochs on 2x-subsampled frames
    batch_size: int = 1               # frames per optimiser step (official: 1)
    shuffle: bool = False             # official visits the frames in order every epoch
    seed: int = 2020                  # official seed
    max_size: int | None = None       # train and infer at most at this side (output resized back); None: full size
    device: str | None = None         # None: the device of the inputs
    infer_batch: int = 8              # frames per forward pass when producing the output

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.infer_batch < 1 or self.width < 1:
            raise ValueError("epochs, batch_size, infer_batch and width must be >= 1")
        if self.loss not in ("l1", "l2"):
            raise ValueError(f"loss must be 'l1' or 'l2', got {self.loss!r}")
        if self.max_size is not None and self.max_size < _MULTIPLE:
            raise ValueError(f"max_size must be >= {_MULTIPLE}")

    def coarse_epochs(self) -> int:
        """How many of the first epochs train on subsampled frames (official: epochs 1 .. (E+1)*4//5 - 1)."""
        if not self.coarse_to_fine:
            return 0
        return max(0, (self.epochs + 1) * 4 // 5 - 1)


def _conv(cin: int, cout: int, k: int = 3) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, k, padding=k // 2)
    nn.init.xavier_uniform_(conv.weight)  # TF-slim's xavier_initializer (uniform), zero bias
    nn.init.zeros_(conv.bias)
    return conv


class _Pair(nn.Module):
    """Two convs, each followed by LeakyReLU(0.2); the first may be 1x1 (the network's entry)."""

    def __init__(self, cin: int, cout: int, first_kernel: int = 3) -> None:
        super().__init__()
        self.a, self.b = _conv(cin, cout, first_kernel), _conv(cout, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.b(F.leaky_relu(self.a(x), 0.2)), 0.2)


class DVPUNet(nn.Module):
    """image ``[B,3,H,W]`` in [0,1] -> ``[B,3,H,W]`` (unbounded); H and W multiples of 16."""

    def __init__(self, width: int = 32, in_channels: int = 3, out_channels: int = 3) -> None:
        super().__init__()
        c = [width * 2 ** i for i in range(5)]
        self.down = nn.ModuleList([_Pair(in_channels, c[0], first_kernel=1)] +
                                  [_Pair(c[i - 1], c[i]) for i in range(1, 5)])
        # Decoder level i: upsample, linear 3x3 conv to c[i], concat the skip (2 c[i]), two convs.
        self.up = nn.ModuleList([_conv(c[i + 1], c[i]) for i in reversed(range(4))])
        self.merge = nn.ModuleList([_Pair(2 * c[i], c[i]) for i in reversed(range(4))])
        self.out = _conv(c[0], out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge):
            x = up(F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False))
            x = merge(torch.cat([x, skips.pop()], dim=1))
        return self.out(x)


@dataclass
class DVPFit:
    """A trained prior: the network (frames in [0,1]) and the mean training loss of every epoch."""

    network: DVPUNet
    losses: list[float]
    size: tuple[int, int]  # (H, W) the network was trained at (before padding)


def _working(images: torch.Tensor, max_size: int | None) -> torch.Tensor:
    """[-1,1] images -> [0,1] at most ``max_size`` on the longest side, padded (replicate) to multiples of 32."""
    x = (images.float() + 1) / 2
    h, w = x.shape[-2:]
    if max_size is not None and max(h, w) > max_size:
        s = max_size / max(h, w)
        x = F.interpolate(x, size=(max(1, round(h * s)), max(1, round(w * s))), mode="bilinear",
                          align_corners=False, antialias=True)
    h, w = x.shape[-2:]
    ph, pw = (-h) % _MULTIPLE, (-w) % _MULTIPLE
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x


def _device(config: DVPConfig, like: torch.Tensor) -> torch.device:
    return torch.device(config.device) if config.device else like.device


def fit_dvp(inputs: torch.Tensor, processed: torch.Tensor, config: DVPConfig = DVPConfig(),
            progress: ProgressFn | None = None) -> DVPFit:
    """Train a fresh prior on one video: inputs, processed ``[T,3,H,W]`` in [-1,1] (same shape)."""
    if inputs.shape != processed.shape or inputs.dim() != 4 or inputs.shape[1] != 3:
        raise ValueError(f"inputs {tuple(inputs.shape)} and processed {tuple(processed.shape)} must both be [T,3,H,W]")
    device = _device(config, inputs)
    h, w = inputs.shape[-2:]
    if config.max_size is not None and max(h, w) > config.max_size:
        s = config.max_size / max(h, w)
        h, w = max(1, round(h * s)), max(1, round(w * s))
    x_all, y_all = _working(inputs, config.max_size).to(device), _working(processed, config.max_size).to(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        network = DVPUNet(config.width).to(device)
    optimiser = torch.optim.Adam(network.parameters(), lr=config.lr)
    order_rng = torch.Generator().manual_seed(config.seed)
    t = x_all.shape[0]
    steps_per_epoch = math.ceil(t / config.batch_size)
    coarse = config.coarse_epochs()
    losses: list[float] = []
    network.train()
    for epoch in range(config.epochs):
        order = torch.randperm(t, generator=order_rng) if config.shuffle else torch.arange(t)
        total = torch.zeros((), device=device)
        for s in range(steps_per_epoch):
            idx = order[s * config.batch_size:(s + 1) * config.batch_size].to(device)
            x, y = x_all[idx], y_all[idx]
            if epoch < coarse:  # official: every other pixel, both frames
                x, y = x[..., ::2, ::2], y[..., ::2, ::2]
            out = network(x)
            diff = out - y
            loss = diff.abs().mean() if config.loss == "l1" else diff.square().mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total += loss.detach()
        losses.append(float(total) / steps_per_epoch)  # one host sync per epoch
        log.debug("DVP epoch %d/%d: loss %.5f", epoch + 1, config.epochs, losses[-1])
        if progress is not None:
            progress((epoch + 1) / config.epochs, f"deep video prior: epoch {epoch + 1}/{config.epochs}")
    network.eval()
    return DVPFit(network.requires_grad_(False), losses, (h, w))


@torch.no_grad()
def apply_dvp(fit: DVPFit, inputs: torch.Tensor, config: DVPConfig = DVPConfig()) -> torch.Tensor:
    """The prior's output for every frame: inputs ``[T,3,H,W]`` in [-1,1] -> ``[T,3,H,W]`` in [-1,1] (same size)."""
    device = next(fit.network.parameters()).device
    h, w = fit.size
    outs = []
    for s in range(0, inputs.shape[0], config.infer_batch):
        x = _working(inputs[s:s + config.infer_batch], config.max_size).to(device)
        outs.append(fit.network(x)[..., :h, :w].clamp(0, 1) * 2 - 1)
    out = torch.cat(outs)
    if out.shape[-2:] != inputs.shape[-2:]:
        out = F.interpolate(out, size=tuple(inputs.shape[-2:]), mode="bilinear", align_corners=False)
    return out.to(inputs.device)


def deep_video_prior(inputs: torch.Tensor, processed: torch.Tensor, config: DVPConfig = DVPConfig(),
                     progress: ProgressFn | None = None) -> torch.Tensor:
    """DVP of ``processed`` guided by ``inputs`` (both ``[T,3,H,W]`` in [-1,1]) -> ``[T,3,H,W]`` in [-1,1]."""
    fit = fit_dvp(inputs, processed, config, progress)
    return apply_dvp(fit, inputs, config)

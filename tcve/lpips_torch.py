"""LPIPS-alex (v0.1) in plain torch + torchvision, for machines without the ``lpips`` package.

The same arithmetic as ``lpips.LPIPS(net='alex', version='0.1')`` (``tcve.losses.SpatialLPIPS`` wraps that one):
inputs in [-1, 1] are shifted/scaled per channel, AlexNet's five ReLU outputs are unit-normalised over channels,
squared differences are weighted by the linear heads (1x1 convs, no bias) and either upsampled bilinearly to the
input size and summed (``spatial=True``, ``[B,1,H,W]``) or averaged over space and summed (``[B,1,1,1]``).
``tests/test_rehearsal.py`` checks it against the lpips package on the same weights.

Weights: the AlexNet backbone from the registry (``lpips-alex-backbone``, torchvision's file) and the linear heads
in the layout of the lpips wheel's ``lpips/weights/v0.1/alex.pth`` (``lin<k>.model.1.weight`` [1, C_k, 1, 1]): by
default that very file, found without importing lpips; else pass a path or a state dict.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import CheckpointUnavailable

CHANNELS = (64, 192, 384, 256, 256)
_TAPS = (1, 4, 7, 9, 11)  # indices of AlexNet.features whose ReLU outputs LPIPS compares (relu1..relu5)
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


def wheel_heads_path() -> Path | None:
    """The lpips wheel's alex.pth when the package is installed (located, not imported)."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1" / "alex.pth"
    return path if path.is_file() else None


def _state(source: str | os.PathLike[str] | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(source, Mapping):
        return source
    from .models.serialization import load_torch_file

    return load_torch_file(source)


class TorchLPIPS(nn.Module):
    """LPIPS-alex without the lpips package; frozen, eval mode. forward(x, y) as ``SpatialLPIPS``."""

    def __init__(self, backbone: str | os.PathLike[str] | Mapping[str, Any] = "pretrained",
                 heads: str | os.PathLike[str] | Mapping[str, Any] | None = None, spatial: bool = True) -> None:
        super().__init__()
        from torchvision.models import alexnet

        from . import checkpoints

        self.features = alexnet().features[: _TAPS[-1] + 1]
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS)
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.spatial = spatial
        if isinstance(backbone, str) and backbone == "pretrained":
            checkpoints.load("lpips-alex-backbone", lambda path: self._load_backbone(_state(path)))
        elif not (isinstance(backbone, str) and backbone == "random"):
            self._load_backbone(_state(backbone))
        if heads is None:
            heads = wheel_heads_path()
            if heads is None:
                raise CheckpointUnavailable("lpips-alex-heads", None, "lpips/weights/v0.1/alex.pth",
                                            "the lpips package is not installed: pass the heads file (heads=...)")
        self._load_heads(_state(heads))
        self.eval()
        self.requires_grad_(False)

    def _load_backbone(self, state: Mapping[str, Any]) -> None:
        from .errors import CheckpointFormatError

        keep = {k[len("features."):]: v for k, v in state.items()
                if k.startswith("features.") and int(k.split(".")[1]) <= _TAPS[-1]}
        missing, _ = self.features.load_state_dict(keep, strict=False)
        if missing or not keep:
            raise CheckpointFormatError(f"not a torchvision alexnet state dict (missing features.{missing[:4]})")

    def _load_heads(self, state: Mapping[str, Any]) -> None:
        from .errors import CheckpointFormatError

        try:
            for k, lin in enumerate(self.lins):
                lin.weight.data.copy_(state[f"lin{k}.model.1.weight"])
        except (KeyError, RuntimeError) as exc:
            raise CheckpointFormatError(f"not LPIPS-alex linear heads (lin0..lin4.model.1.weight): {exc}") from exc

    def train(self, mode: bool = True) -> TorchLPIPS:
        return super().train(False)  # no dropout, no batch statistics: always inference behaviour

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        a, b = (x - self.shift) / self.scale, (y - self.shift) / self.scale
        total = None
        k = 0
        for i, layer in enumerate(self.features):
            a, b = layer(a), layer(b)
            if i not in _TAPS:
                continue
            fa = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            fb = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            d = self.lins[k]((fa - fb) ** 2)
            d = (F.interpolate(d, size=size, mode="bilinear", align_corners=False) if self.spatial
                 else d.mean((2, 3), keepdim=True))
            total = d if total is None else total + d
            k += 1
        return total

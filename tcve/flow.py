"""Optical flow, backward warping and flow-consistency masks (paper Sec. 3.2; official ``temp_consist.py``).

Conventions (see ``/work/api.md``): ``image`` is float ``[B,3,H,W]`` in [-1,1]; ``flow`` is ``[B,2,H,W]`` in pixels,
channel 0 horizontal (x), channel 1 vertical (y), defined on the *first* image's grid, so that
``image1(p) ~= image2(p + flow(p))`` and ``warp(image2, flow) ~= image1``.

Estimators:

- ``RaftFlow``: torchvision's RAFT (large = the raft-things network of the official code, or small), differentiable
  with respect to its input images as in the official code (its weights are frozen; RAFT detaches its own coordinate
  recurrence at every update, exactly as the original implementation does).
- ``DisFlow``: OpenCV DIS, a classical estimator without gradients, for offline tests and the CPU demo.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

__all__ = [
    "FlowEstimator",
    "RaftFlow",
    "DisFlow",
    "warp",
    "WarpConvention",
    "WARP_CONVENTIONS",
    "fb_consistency_error",
    "visibility_mask",
    "load_flow_estimator",
    "RAFT_MIN_SIZE",
]

# RAFT's 4-level correlation pyramid at 1/8 resolution needs >= 16 feature pixels per side to stay meaningful.
RAFT_MIN_SIZE = 128


# ---------------------------------------------------------------------------------------------------------------------
# warping and masks


def _base_grid(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Pixel coordinates ``[1,2,H,W]`` (x, y)."""
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype), indexing="ij"
    )
    return torch.stack((xs, ys), dim=0).unsqueeze(0)


WarpConvention = Literal["aligned", "official"]
WARP_CONVENTIONS = ("aligned", "official")


def warp(x: torch.Tensor, flow: torch.Tensor, padding_mode: str = "zeros",
         convention: WarpConvention = "aligned") -> torch.Tensor:
    """Backward warp: ``out(p) = x(p + flow(p))``, bilinear.

    x: ``[B,C,H,W]``; flow: ``[B,2,H,W]`` (pixels, x then y) -> ``[B,C,H,W]`` (a batch of 1 on either side broadcasts).
    The sampling grid is normalised by ``(W-1, H-1)`` in both conventions:

    - 'aligned': ``grid_sample(align_corners=True)``, so a zero flow is an identity up to float rounding;
      padding_mode 'zeros' (the method) or 'border' (clamped samples, as flownet2's Resample2d in Lai et al.'s metric).
    - 'official': the official ``utils/flow_utils.flow_warp``: ``grid_sample``'s default ``align_corners=False`` on
      that grid, i.e. pixel x is sampled at ``(x + flow_x) * W/(W-1) - 0.5`` (a sub-pixel stretch about the centre),
      zero padding, and every output pixel whose bilinear footprint leaves the image (a warped all-ones image below
      0.9999) set to 0, which zeroes the outer 1-px ring even at zero flow. The mask carries no gradient there
      either. padding_mode must be 'zeros'.
    """
    if flow.shape[1] != 2 or flow.shape[-2:] != x.shape[-2:]:
        raise ValueError(f"flow must be [B,2,H,W] matching x {tuple(x.shape)}, got {tuple(flow.shape)}")
    if convention not in WARP_CONVENTIONS:
        raise ValueError(f"convention must be one of {WARP_CONVENTIONS}, got {convention!r}")
    b, _, h, w = x.shape
    coords = _base_grid(h, w, flow.device, flow.dtype) + flow
    gx = 2.0 * coords[:, 0] / max(w - 1, 1) - 1.0
    gy = 2.0 * coords[:, 1] / max(h - 1, 1) - 1.0
    grid = torch.stack((gx, gy), dim=-1)
    # a batch of 1 on either side broadcasts against the other (one anchor vs several frames)
    n = max(b, grid.shape[0])
    if x.shape[0] != n:
        x = x.expand(n, -1, -1, -1)
    if grid.shape[0] != n:
        grid = grid.expand(n, -1, -1, -1)
    grid = grid.to(x.dtype)
    if convention == "aligned":
        return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)
    if padding_mode != "zeros":
        raise ValueError("the official warp pads with zeros only")
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    with torch.no_grad():
        inside = F.grid_sample(torch.ones_like(x[:, :1]), grid.detach(), mode="bilinear", padding_mode="zeros",
                               align_corners=False) >= 0.9999
    return warped * inside.to(warped.dtype)


def fb_consistency_error(flow_fw: torch.Tensor, flow_bw: torch.Tensor) -> torch.Tensor:
    """Forward-backward error ``eps(p) = || flow_fw(p) + flow_bw(p + flow_fw(p)) ||_2`` in pixels, ``[B,1,H,W]``.

    ``flow_fw`` lives on frame 1's grid (1->2), ``flow_bw`` on frame 2's grid (2->1). Where ``p + flow_fw(p)`` leaves
    the image the sampled backward flow is 0, so eps reduces to ``|flow_fw(p)|`` (as in the official code).
    """
    return (flow_fw + warp(flow_bw, flow_fw)).pow(2).sum(1, keepdim=True).clamp_min(1e-12).sqrt()


def visibility_mask(eps: torch.Tensor, k: float = 5.0) -> torch.Tensor:
    """Soft visibility ``exp(-k * eps)`` in [0,1] (official code k=5, paper k=10)."""
    return torch.exp(-k * eps)


# ---------------------------------------------------------------------------------------------------------------------
# estimators


@runtime_checkable
class FlowEstimator(Protocol):
    """``flow = estimator(image1, image2)``: images ``[B,3,H,W]`` in [-1,1] -> flow 1->2 ``[B,2,H,W]`` on image1's grid."""

    def __call__(self, image1: torch.Tensor, image2: torch.Tensor) -> torch.Tensor: ...


def _pad_amounts(size: int, multiple: int = 8, minimum: int = RAFT_MIN_SIZE) -> tuple[int, int]:
    target = max(minimum, -(-size // multiple) * multiple)
    extra = target - size
    return extra // 2, extra - extra // 2


def _clean_raft_state(state: Any) -> dict[str, torch.Tensor]:
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        from .errors import CheckpointFormatError

        raise CheckpointFormatError(f"RAFT weights must be a state dict, got {type(state).__name__}")
    # DataParallel-saved files carry a 'module.' prefix.
    return {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}


class RaftFlow(nn.Module):
    """torchvision RAFT, frozen weights, differentiable w.r.t. the input images.

    size: 'large' (raft-things network of the official code) or 'small'; weights: a path, a state dict of the
    matching torchvision module, or None (random initialisation: tests only); iters: flow updates (official 20).
    Inputs of any size are replicate-padded to a multiple of 8 and at least 128 px, and the flow is cropped back.
    """

    def __init__(self, size: str = "large", weights: str | os.PathLike[str] | Mapping[str, Any] | None = None,
                 iters: int = 20) -> None:
        super().__init__()
        from torchvision.models.optical_flow import raft_large, raft_small

        if size not in ("large", "small"):
            raise ValueError(f"size must be 'large' or 'small', got {size!r}")
        self.size, self.iters = size, int(iters)
        self.raft = (raft_large if size == "large" else raft_small)(weights=None, progress=False)
        if weights is not None:
            if not isinstance(weights, Mapping):
                from .models.serialization import load_torch_file

                weights = load_torch_file(weights)
            self.raft.load_state_dict(_clean_raft_state(weights), strict=True)
        else:
            logger.warning("RaftFlow(%s) built with random weights: flows are meaningless (tests only)", size)
        self.raft.eval()
        self.raft.requires_grad_(False)

    def train(self, mode: bool = True) -> RaftFlow:
        # RAFT has BatchNorm in its encoders (large): keep it in eval whatever the parent module does.
        super().train(mode)
        self.raft.eval()
        return self

    def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> torch.Tensor:
        """image1, image2 ``[B,3,H,W]`` in [-1,1] -> flow 1->2 ``[B,2,H,W]`` (pixels)."""
        if image1.shape != image2.shape or image1.dim() != 4 or image1.shape[1] != 3:
            raise ValueError(f"expected two [B,3,H,W] images of equal shape, got {tuple(image1.shape)}, {tuple(image2.shape)}")
        h, w = image1.shape[-2:]
        top, bottom = _pad_amounts(h)
        left, right = _pad_amounts(w)
        padded = (left, right, top, bottom)
        if any(padded):
            image1 = F.pad(image1, padded, mode="replicate")
            image2 = F.pad(image2, padded, mode="replicate")
        flow = self.raft(image1.contiguous(), image2.contiguous(), num_flow_updates=self.iters)[-1]
        return flow[..., top:top + h, left:left + w]


class DisFlow:
    """OpenCV DIS optical flow (no gradients). preset: 'ultrafast' | 'fast' | 'medium'."""

    _PRESETS = {"ultrafast": 0, "fast": 1, "medium": 2}

    def __init__(self, preset: str = "medium") -> None:
        if preset not in self._PRESETS:
            raise ValueError(f"preset must be one of {sorted(self._PRESETS)}, got {preset!r}")
        self.preset = preset

    @staticmethod
    def _gray(image: torch.Tensor) -> np.ndarray:
        """``[3,H,W]`` in [-1,1] -> uint8 gray ``[H,W]``."""
        import cv2

        rgb = ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
        return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)

    def __call__(self, image1: torch.Tensor, image2: torch.Tensor) -> torch.Tensor:
        """image1, image2 ``[B,3,H,W]`` in [-1,1] -> flow 1->2 ``[B,2,H,W]`` float32 on image1's device."""
        import cv2

        if image1.shape != image2.shape or image1.dim() != 4:
            raise ValueError(f"expected two [B,3,H,W] images of equal shape, got {tuple(image1.shape)}, {tuple(image2.shape)}")
        dis = cv2.DISOpticalFlow_create(self._PRESETS[self.preset])
        flows = [
            torch.from_numpy(dis.calc(self._gray(a), self._gray(b), None)).permute(2, 0, 1)
            for a, b in zip(image1, image2)
        ]
        return torch.stack(flows).to(device=image1.device, dtype=torch.float32)


_RAFT_NAMES = {"raft-large": "large", "raft-small": "small"}


def load_flow_estimator(name: str = "raft-large", *, weights: str | os.PathLike[str] | Mapping[str, Any] | None = None,
                        iters: int = 20, checkpoint: str | None = None, dis_preset: str = "medium",
                        device: str | torch.device = "cpu") -> FlowEstimator:
    """Build a flow estimator by name: 'raft-large' | 'raft-small' | 'dis'.

    RAFT weights come from ``weights`` (path or state dict) or else ``tcve.checkpoints.fetch(checkpoint or name)``,
    which raises ``tcve.errors.CheckpointUnavailable`` with a clear message when the file cannot be had.
    """
    if name == "dis":
        return DisFlow(dis_preset)
    if name not in _RAFT_NAMES:
        raise ValueError(f"unknown flow estimator {name!r}; choose 'raft-large', 'raft-small' or 'dis'")
    if weights is None:
        from . import checkpoints  # lazy: the registry module is optional at import time

        # load() names the checkpoint and its location when the file cannot be read or does not fit RAFT
        return checkpoints.load(checkpoint or name,
                                lambda path: RaftFlow(_RAFT_NAMES[name], weights=path, iters=iters)).to(device)
    return RaftFlow(_RAFT_NAMES[name], weights=weights, iters=iters).to(device)

"""Evaluation metrics of the paper (Sec. 4.1): warping error E_warp (Eq. 9) and LPIPS fidelity, plus an x-t slice.

Videos are passed as batched float tensors ``[T,3,H,W]`` in [-1,1] (the ``image`` vocabulary); ``frames_to_images``
converts a stack of uint8 HWC RGB frames ``[T,H,W,3]`` (or a list of them). Results are plain floats / numpy arrays.

Warping error follows Lai et al. ECCV'18's released evaluation (``fast_blind_video_consistency``), see notes §6.1:

- flows are computed on the **input** video (pass the aligned input frames and a ``FlowEstimator``);
- non-occlusion mask on frame t's grid: occluded where ``|F_fw + F~_bw|^2 > 0.01 (|F_fw|^2 + |F~_bw|^2) + 0.5``
  (``F~_bw = F_bw(p + F_fw(p))``), or at a motion boundary ``|dF_fw/dx|^2 + |dF_fw/dy|^2 > 0.01 |F_fw|^2 + 0.002``
  (forward differences, both flow components);
- ``E_t = sum_{p,c} M_t (warp(O_{t+1}, F_fw) - O_t)^2 / (3 * sum_p M_t)`` with RGB in [0,1]: the denominator counts
  channels (Lai's per-channel mean; the paper's Eq. 9 divides by pixels only, which would be 3x larger). If no pixel is
  visible the denominator is ``3*H*W``;
- E_warp = mean of E_t over the T-1 consecutive pairs.
Out-of-image samples are clamped to the border by default, as flownet2's ``Resample2d`` in Lai's code does (so pixels
whose motion leaves the frame are compared with replicated border content); ``padding_mode='zeros'`` instead makes
them fail the forward-backward check, which excludes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .flow import FlowEstimator, warp

__all__ = [
    "WarpingError",
    "LpipsFidelity",
    "frames_to_images",
    "images_to_frames",
    "lai_non_occlusion_mask",
    "warping_error_from_flows",
    "warping_error",
    "consecutive_flows",
    "resize_square",
    "lpips_fidelity",
    "xt_slice",
]


@dataclass(frozen=True)
class WarpingError:
    """mean: E_warp of the video; per_pair: ``[T-1]`` E_t curve; visible_fraction: ``[T-1]`` mean of M_t."""

    mean: float
    per_pair: np.ndarray
    visible_fraction: np.ndarray


@dataclass(frozen=True)
class LpipsFidelity:
    """mean: LPIPS averaged over frames; per_frame: ``[T]``."""

    mean: float
    per_frame: np.ndarray


def frames_to_images(frames: np.ndarray | Sequence[np.ndarray] | torch.Tensor) -> torch.Tensor:
    """uint8 ``[T,H,W,3]`` RGB frames (array or list) -> float ``[T,3,H,W]`` in [-1,1]; float tensors pass through."""
    if isinstance(frames, torch.Tensor) and frames.is_floating_point():
        if frames.dim() != 4 or frames.shape[1] != 3:
            raise ValueError(f"expected a [T,3,H,W] video, got {tuple(frames.shape)}")
        return frames
    arr = np.stack(list(frames)) if not isinstance(frames, (np.ndarray, torch.Tensor)) else frames
    t = torch.as_tensor(np.asarray(arr))
    if t.dtype != torch.uint8 or t.dim() != 4 or t.shape[-1] != 3:
        raise ValueError(f"expected uint8 [T,H,W,3] frames, got {t.dtype} {tuple(t.shape)}")
    return t.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def images_to_frames(images: torch.Tensor) -> np.ndarray:
    """float ``[T,3,H,W]`` in [-1,1] -> uint8 ``[T,H,W,3]``."""
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def _sq_mag(flow: torch.Tensor) -> torch.Tensor:
    return flow.pow(2).sum(1, keepdim=True)


def lai_non_occlusion_mask(flow_fw: torch.Tensor, flow_bw: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Lai et al.'s non-occlusion mask on frame t's grid, ``[B,1,H,W]`` in {0,1} (1 = visible).

    flow_fw: t->t+1 on frame t's grid; flow_bw: t+1->t on frame t+1's grid (both ``[B,2,H,W]``, pixels).
    """
    bw_sampled = warp(flow_bw, flow_fw, padding_mode)
    occluded = _sq_mag(flow_fw + bw_sampled) > 0.01 * (_sq_mag(flow_fw) + _sq_mag(bw_sampled)) + 0.5
    # motion boundary: forward differences, zero on the last column / row (as in Lai's compute_flow_gradients)
    dx = torch.zeros_like(flow_fw)
    dy = torch.zeros_like(flow_fw)
    dx[..., :, :-1] = flow_fw[..., :, 1:] - flow_fw[..., :, :-1]
    dy[..., :-1, :] = flow_fw[..., 1:, :] - flow_fw[..., :-1, :]
    boundary = _sq_mag(dx) + _sq_mag(dy) > 0.01 * _sq_mag(flow_fw) + 0.002
    return (~(occluded | boundary)).float()


@torch.no_grad()
def warping_error_from_flows(video: torch.Tensor, flows_fw: torch.Tensor, flows_bw: torch.Tensor,
                             padding_mode: str = "border") -> WarpingError:
    """E_warp of ``video`` ``[T,3,H,W]`` in [-1,1] given flows ``[T-1,2,H,W]`` (fw: t->t+1, bw: t+1->t)."""
    video = frames_to_images(video)
    if video.shape[0] < 2:
        raise ValueError("warping error needs at least 2 frames")
    if flows_fw.shape[0] != video.shape[0] - 1 or flows_bw.shape != flows_fw.shape:
        raise ValueError(f"need T-1={video.shape[0] - 1} flows each way, got {tuple(flows_fw.shape)}, "
                         f"{tuple(flows_bw.shape)}")
    flows_fw = flows_fw.to(video.device, torch.float32)
    flows_bw = flows_bw.to(video.device, torch.float32)
    rgb = (video.float() + 1.0) / 2.0
    mask = lai_non_occlusion_mask(flows_fw, flows_bw, padding_mode)
    warped = warp(rgb[1:], flows_fw, padding_mode)
    sq = (warped - rgb[:-1]).pow(2) * mask
    h, w = video.shape[-2:]
    denom = 3.0 * mask.sum(dim=(1, 2, 3))
    denom = torch.where(denom > 0, denom, torch.full_like(denom, 3.0 * h * w))
    per_pair = (sq.sum(dim=(1, 2, 3)) / denom).cpu().numpy().astype(np.float64)
    visible = mask.mean(dim=(1, 2, 3)).cpu().numpy().astype(np.float64)
    return WarpingError(mean=float(per_pair.mean()), per_pair=per_pair, visible_fraction=visible)


@torch.no_grad()
def warping_error(video: torch.Tensor, input_video: torch.Tensor, flow: FlowEstimator,
                  batch_size: int = 8, padding_mode: str = "border") -> WarpingError:
    """E_warp (Eq. 9, Lai's protocol) of ``video`` with flows estimated by ``flow`` on ``input_video``.

    Both ``[T,3,H,W]`` in [-1,1] (or uint8 ``[T,H,W,3]``), same size. Pass ``input_video=video`` to measure a video
    on its own motion (e.g. when no input is available).
    """
    video = frames_to_images(video)
    input_video = frames_to_images(input_video).to(video.device)
    if input_video.shape != video.shape:
        raise ValueError(f"video {tuple(video.shape)} and input_video {tuple(input_video.shape)} differ in shape")
    return warping_error_from_flows(video, *consecutive_flows(input_video, flow, batch_size), padding_mode)


@torch.no_grad()
def consecutive_flows(video: torch.Tensor, flow: FlowEstimator, batch_size: int = 8
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward (t -> t+1) and backward (t+1 -> t) flows ``[T-1,2,H,W]`` of ``video`` ``[T,3,H,W]``: what E_warp warps
    with. Estimate them once per input clip and score every output with ``warping_error_from_flows``."""
    fws, bws = [], []
    for s in range(0, video.shape[0] - 1, batch_size):
        a = video[s:s + batch_size + 1]
        fws.append(flow(a[:-1], a[1:]).float())
        bws.append(flow(a[1:], a[:-1]).float())
    return torch.cat(fws), torch.cat(bws)


def resize_square(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images ``[B,3,H,W]`` resized to ``size`` x ``size`` (antialiased bilinear), unchanged when already that size:
    how outputs are brought to the metrics resolution."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)


@torch.no_grad()
def lpips_fidelity(video_a: torch.Tensor, video_b: torch.Tensor, lpips: nn.Module,
                   batch_size: int = 8) -> LpipsFidelity:
    """Per-frame LPIPS between two videos ``[T,3,H,W]`` in [-1,1] (e.g. direct edit vs consistent result).

    lpips: e.g. ``SpatialLPIPS('alex', spatial=False)`` (paper: AlexNet, v0.1, non-spatial); a spatial map is averaged.
    """
    video_a, video_b = frames_to_images(video_a), frames_to_images(video_b)
    if video_a.shape != video_b.shape:
        raise ValueError(f"videos differ in shape: {tuple(video_a.shape)} vs {tuple(video_b.shape)}")
    device = next(lpips.parameters()).device
    vals = [
        lpips(video_a[s:s + batch_size].to(device), video_b[s:s + batch_size].to(device)).flatten(1).mean(1)
        for s in range(0, video_a.shape[0], batch_size)
    ]
    per_frame = torch.cat(vals).cpu().numpy().astype(np.float64)
    return LpipsFidelity(mean=float(per_frame.mean()), per_frame=per_frame)


def xt_slice(video: torch.Tensor | np.ndarray, row: int | None = None) -> np.ndarray:
    """x-t image: row ``row`` (default H//2) of every frame stacked over time -> uint8 ``[T,W,3]``."""
    frames = images_to_frames(frames_to_images(video))
    r = frames.shape[1] // 2 if row is None else row
    if not 0 <= r < frames.shape[1]:
        raise ValueError(f"row {r} outside 0..{frames.shape[1] - 1}")
    return np.ascontiguousarray(frames[:, r])

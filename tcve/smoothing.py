"""Latent-smoothing baseline (as StyleGAN3-editing post-processes video inversions; Alaluf et al. 2022).

Two steps on the W+ codes of a clip ``[T,n_latent,D]``:

1. the fine rows (``fine_from`` onwards) are replaced by their mean over the clip (texture/colour stays fixed);
2. every row is filtered in time with the 5-tap kernel ``[0.25, 0.75, 1, 0.75, 0.25] / 3``.

StyleGAN3-editing applies the kernel as a 'valid' convolution, so the clip loses two frames at each end; here the ends
are padded (edge replication by default) so the output keeps all T frames aligned with the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

__all__ = ["SmoothingConfig", "TEMPORAL_KERNEL", "default_fine_from", "smooth_latents"]

TEMPORAL_KERNEL = (0.25, 0.75, 1.0, 0.75, 0.25)


@dataclass(frozen=True)
class SmoothingConfig:
    """fine_from: first W+ row averaged over the clip (None: 8 for 18 rows, else the same 4/9 fraction);
    average_fine / temporal: switch either step off; pad: 'replicate' | 'reflect' for the clip ends."""

    fine_from: int | None = None
    average_fine: bool = True
    temporal: bool = True
    kernel: tuple[float, ...] = TEMPORAL_KERNEL
    pad: Literal["replicate", "reflect"] = "replicate"


def default_fine_from(n_latent: int) -> int:
    """StyleCLIP's split for 1024 generators (rows 8-17 fine), scaled for other depths."""
    return 8 if n_latent == 18 else max(1, round(n_latent * 4 / 9))


def smooth_latents(w_plus: torch.Tensor, config: SmoothingConfig | None = None) -> torch.Tensor:
    """W+ codes ``[T,n_latent,D]`` -> smoothed codes of the same shape (T frames kept)."""
    cfg = config or SmoothingConfig()
    if w_plus.dim() != 3:
        raise ValueError(f"w_plus must be [T,n_latent,D], got {tuple(w_plus.shape)}")
    t, n_latent, dim = w_plus.shape
    out = w_plus.clone()
    if cfg.average_fine:
        start = default_fine_from(n_latent) if cfg.fine_from is None else cfg.fine_from
        out[:, start:] = out[:, start:].mean(dim=0, keepdim=True)
    if cfg.temporal and t > 1:
        taps = torch.tensor(cfg.kernel, dtype=out.dtype, device=out.device)
        taps = taps / taps.sum()
        half = len(cfg.kernel) // 2
        seq = out.permute(1, 2, 0).reshape(1, n_latent * dim, t)   # time as the conv axis
        mode = cfg.pad if (cfg.pad == "replicate" or t > half) else "replicate"
        seq = F.pad(seq, (half, half), mode=mode)
        seq = F.conv1d(seq, taps.view(1, 1, -1).expand(n_latent * dim, 1, -1), groups=n_latent * dim)
        out = seq.reshape(n_latent, dim, t).permute(2, 0, 1).contiguous()
    return out

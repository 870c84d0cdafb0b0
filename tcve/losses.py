"""Losses and masks of the temporal-consistency optimisation (paper Sec. 3.2-3.4, Eq. 1-7; notes §5).

Every function takes ``image`` tensors ``[B,3,H,W]`` in [-1,1], ``flow`` ``[B,2,H,W]`` in pixels and ``mask``
``[B,1,H,W]`` and returns a scalar tensor unless stated otherwise. Where the official code and the paper differ,
the default is the official behaviour and the paper's variant is an option (named in each docstring).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .errors import CheckpointUnavailable
from .flow import WarpConvention, warp

logger = logging.getLogger(__name__)

__all__ = [
    "SpatialLPIPS",
    "masked_mean",
    "perceptual_difference_mask",
    "fuse_masks",
    "photometric_loss",
    "latent_residual_loss",
    "fb_consistency_loss",
    "out_of_mask_loss",
    "in_mask_loss",
    "flow_tv",
    "local_regularizer",
    "to_255",
]

_NETS = ("alex", "vgg")


class SpatialLPIPS(nn.Module):
    """LPIPS v0.1 (``lpips`` package) with a per-pixel output, frozen.

    net: 'alex' (official) | 'vgg'. backbone: 'pretrained' (torchvision ImageNet weights through
    ``tcve.checkpoints.fetch('lpips-<net>-backbone')``: $TCVE_CHECKPOINT_DIR, caches, else a download;
    ``CheckpointUnavailable`` offline), 'random' (random backbone + the real linear
    heads shipped in the lpips wheel: tests only), or a path / state dict of torchvision's alexnet / vgg16.
    spatial: True -> ``[B,1,H,W]`` map (upsampled per layer, as ``lpips`` does); False -> ``[B,1,1,1]`` spatial mean of
    each layer (the standard LPIPS distance used for metrics).
    forward(x, y) takes inputs in [-1,1] (or whatever range the caller decides, e.g. [0,255] in the official code).
    """

    def __init__(self, net: Literal["alex", "vgg"] = "alex",
                 backbone: str | os.PathLike[str] | Mapping[str, Any] = "pretrained", spatial: bool = True) -> None:
        super().__init__()
        import lpips

        if net not in _NETS:
            raise ValueError(f"net must be 'alex' or 'vgg', got {net!r}")
        state: Any = None
        if isinstance(backbone, Mapping):
            state = backbone
        elif backbone == "pretrained":
            from . import checkpoints  # lazy: keeps this module importable on its own

            # before building anything, so that offline use fails fast with the registry's message
            state = checkpoints.fetch(f"lpips-{net}-backbone")
        elif backbone != "random":
            state = Path(backbone)
            if not state.is_file():
                raise CheckpointUnavailable(f"lpips-{net}-backbone", None, str(state), "file not found")
        # pnet_rand=True: never let lpips/torchvision download; the heads (lin*) come from the wheel.
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            self.model = lpips.LPIPS(net=net, spatial=spatial, pnet_rand=True, verbose=False)
        if state is not None:
            if not isinstance(state, Mapping):
                from .models.serialization import load_torch_file

                state = load_torch_file(state)
            self._load_backbone(state)
        self.net, self.spatial = net, spatial
        self.model.eval()
        self.model.requires_grad_(False)

    def _load_backbone(self, state: Mapping[str, Any]) -> None:
        # torchvision keys 'features.<i>.<param>' -> lpips 'slice<k>.<i>.<param>' (lpips keeps torchvision's indices).
        where = {}
        for slice_name, block in self.model.net.named_children():
            for idx in block._modules:
                where[idx] = slice_name
        mapped = {}
        for key, value in state.items():
            parts = key.split(".")
            if len(parts) == 3 and parts[0] == "features" and parts[1] in where:
                mapped[f"{where[parts[1]]}.{parts[1]}.{parts[2]}"] = value
        missing, _ = self.model.net.load_state_dict(mapped, strict=False)
        if missing or not mapped:
            from .errors import CheckpointFormatError

            raise CheckpointFormatError(
                f"not a torchvision {'alexnet' if self.net == 'alex' else 'vgg16'} state dict (missing {missing[:4]})"
            )

    def train(self, mode: bool = True) -> SpatialLPIPS:
        super().train(mode)
        self.model.eval()  # dropout in the heads must stay off
        return self

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y ``[B,3,H,W]`` -> ``[B,1,H,W]`` (spatial) or ``[B,1,1,1]``."""
        return self.model(x, y)


def to_255(image: torch.Tensor) -> torch.Tensor:
    """[-1,1] -> [0,255] (the range the official code feeds RAFT and the photometric LPIPS)."""
    return 127.5 * (image + 1.0)


def masked_mean(value: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``sum(value*mask) / (sum(mask)*C)``: value ``[B,C,H,W]``, mask ``[B,1,H,W]`` broadcast over C -> scalar."""
    c = value.shape[1]
    mask = mask.expand(-1, 1, -1, -1) if mask.shape[1] == 1 else mask
    return (value * mask).sum() / (mask.sum() * c).clamp_min(eps)


def perceptual_difference_mask(lpips: nn.Module, generated: torch.Tensor, aligned_input: torch.Tensor,
                               size: tuple[int, int] | None = None) -> torch.Tensor:
    """Raw spatial LPIPS between a generated frame and the aligned input -> ``[B,1,H,W]`` (not clamped, as official).

    size: optional (h, w) to nearest-downsample to (official: computed at 1024, nearest x1/4 to 256).
    """
    pd = lpips(generated, aligned_input)
    if size is not None and tuple(pd.shape[-2:]) != tuple(size):
        pd = F.interpolate(pd, size=size, mode="nearest")
    return pd


def fuse_masks(visibility: torch.Tensor, pd: torch.Tensor) -> torch.Tensor:
    """``clamp(visibility + pd, 0, 1)`` (paper M^vis (+) M^PD)."""
    return (visibility + pd).clamp(0.0, 1.0)


def photometric_loss(lpips: nn.Module, x_a: torch.Tensor, x_i: torch.Tensor, flow_ai: torch.Tensor,
                     flow_ia: torch.Tensor, mask_a: torch.Tensor, mask_i: torch.Tensor,
                     lpips_input_range: Literal["255", "unit"] = "255",
                     warp_convention: WarpConvention = "official") -> torch.Tensor:
    """Bidirectional masked photometric loss (Eq. 1).

    ``<LPIPS(x_i, warp(x_a, flow_ia)), mask_i> + <LPIPS(x_a, warp(x_i, flow_ai)), mask_a>``; flow_ai lives on the
    anchor grid (a->i), flow_ia on frame i's grid (i->a). lpips_input_range '255' feeds LPIPS 127.5*(x+1) as the
    official code does; 'unit' feeds [-1,1] (paper / LPIPS' intended range). warp_convention: 'official' (the
    official ``flow_warp``: align_corners=False on a (W-1)-normalised grid, edge-touching samples zeroed) or
    'aligned' (align_corners=True, a zero flow is an identity); see ``tcve.flow.warp``.
    """
    q = to_255 if lpips_input_range == "255" else (lambda t: t)
    if lpips_input_range not in ("255", "unit"):
        raise ValueError(f"lpips_input_range must be '255' or 'unit', got {lpips_input_range!r}")
    a_to_i = warp(x_a, flow_ia, convention=warp_convention)
    i_to_a = warp(x_i, flow_ai, convention=warp_convention)
    return masked_mean(lpips(q(x_i), q(a_to_i)), mask_i) + masked_mean(lpips(q(x_a), q(i_to_a)), mask_a)


def latent_residual_loss(delta: torch.Tensor, mode: Literal["mean", "l1"] = "mean") -> torch.Tensor:
    """L_rf (Eq. 4) on a latent residual ``[B,n_latent,D]``.

    'mean' (official): mean |delta| over all entries; 'l1' (paper): L1 norm per sample, averaged over the batch.
    """
    if mode == "mean":
        return delta.abs().mean()
    if mode == "l1":
        return delta.abs().flatten(1).sum(1).mean()
    raise ValueError(f"mode must be 'mean' or 'l1', got {mode!r}")


def fb_consistency_loss(eps_a: torch.Tensor, eps_i: torch.Tensor, mask_a: torch.Tensor | None = None,
                        mask_i: torch.Tensor | None = None, mode: Literal["masked", "l1"] = "masked") -> torch.Tensor:
    """L_eps on the two forward-backward errors ``[B,1,H,W]``.

    'masked' (official): ``<eps_a, mask_a> + <eps_i, mask_i>``; 'l1' (paper's plain L1, taken as a per-pixel mean so
    it does not scale with resolution): ``mean|eps_a| + mean|eps_i|``.
    """
    if mode == "masked":
        if mask_a is None or mask_i is None:
            raise ValueError("mode='masked' needs mask_a and mask_i")
        return masked_mean(eps_a, mask_a) + masked_mean(eps_i, mask_i)
    if mode == "l1":
        return eps_a.abs().mean() + eps_i.abs().mean()
    raise ValueError(f"mode must be 'masked' or 'l1', got {mode!r}")


def out_of_mask_loss(lpips: nn.Module, x: torch.Tensor, aligned_input: torch.Tensor, pd_mask: torch.Tensor,
                     power: float = 4.0, clamp: bool = False) -> torch.Tensor:
    """L_M (Eq. 6): ``<LPIPS(x, aligned_input), (1 - pd_mask)^power>`` with LPIPS on [-1,1].

    Official: power 4, mask not clamped; paper: power 1 (clamp=True keeps the weight in [0,1]).
    """
    m = pd_mask.clamp(0.0, 1.0) if clamp else pd_mask
    return masked_mean(lpips(x, aligned_input), (1.0 - m).pow(power))


def in_mask_loss(lpips: nn.Module, x: torch.Tensor, x_old: torch.Tensor, pd_mask: torch.Tensor,
                 power: float = 4.0) -> torch.Tensor:
    """Official (weight 0 in the README) in-mask term: ``<LPIPS(x, x_old), pd_mask^power>``."""
    return masked_mean(lpips(x, x_old), pd_mask.pow(power))


def flow_tv(flow: torch.Tensor) -> torch.Tensor:
    """Total variation of a flow ``[B,2,H,W]``: mean|d/dx| + mean|d/dy| (official ``weight_tv_flow`` term)."""
    return (flow[..., :, 1:] - flow[..., :, :-1]).abs().mean() + (flow[..., 1:, :] - flow[..., :-1, :]).abs().mean()


def local_regularizer(g_tuned: nn.Module, g_frozen: nn.Module, w_center: torch.Tensor, lpips: nn.Module,
                      alpha: float = 30.0, l2_weight: float = 0.1, lpips_weight: float = 0.1, psi: float = 0.5,
                      n_samples: int = 1, noise_mode: str = "none",
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Generator locality regulariser L_r (Eq. 7; official ``calc_reg_G``).

    w_center: ``[n_latent,D]`` or ``[1,n_latent,D]`` W+ code (official: the anchor's; paper: the current frame's).
    For each of n_samples: z ~ N(0,I), w_s = g_frozen.mapping(z, psi) broadcast to W+,
    W_r = w_center + alpha * (w_s - w_center) / ||w_s - w_center||_F (Frobenius over the whole W+ tensor);
    returns ``l2_weight * MSE(G_frozen(W_r), G_tuned(W_r)) + lpips_weight * mean LPIPS`` (LPIPS on [-1,1]).
    """
    if w_center.dim() == 2:
        w_center = w_center.unsqueeze(0)
    w_center = w_center.detach()
    n_latent, dim = w_center.shape[-2:]
    device = w_center.device
    with torch.no_grad():
        z = torch.randn(n_samples, dim, generator=generator, device=generator.device if generator else device)
        w_s = g_frozen.mapping(z.to(device), truncation=psi)
        w_s = w_s.unsqueeze(1).expand(-1, n_latent, -1) if w_s.dim() == 2 else w_s
        diff = w_s - w_center
        norm = diff.flatten(1).norm(dim=1).clamp_min(1e-8).view(-1, 1, 1)
        w_r = w_center + alpha * diff / norm
        target = g_frozen.synthesis(w_r, noise_mode=noise_mode)
    out = g_tuned.synthesis(w_r, noise_mode=noise_mode)
    return l2_weight * F.mse_loss(out, target) + lpips_weight * lpips(out, target).mean()

"""Phase 3 (in-domain): STIT stitch tuning on aligned crops (paper Sec. 3.4; STIT, Tzaban et al. 2022; notes §2.4).

For every frame a copy of the (temporally tuned) generator is tuned briefly so that the rendered crop agrees with the
*original* aligned crop on a border band around the face, while the face content stays close to the edit:

``L = sum(B (x - crop)^2) / sum(B) + content_weight * sum(C (x - edit)^2) / sum(C)``  (sums over RGB, masks 1-channel)

Masks (STIT ``create_masks`` with VideoEditGAN's extra dilation), computed at half the crop resolution (512 for 1024)
and bilinearly upsampled: fg = face mask dilated by a 51 px square; full = fg dilated by 75 px; border = (fg within
37 px of the crop edge) or (full - fg); content = fg - border. The alpha for the paste is ``full`` eroded by 75 px and
Gaussian-blurred with a 75 px kernel (OpenCV's sigma rule). Pixel sizes are given at 512 and scale with the crop.

The face mask comes from an injected callable (BiSeNet in the original; none ships offline), by default a soft
ellipse around the FFHQ crop centre. Poisson blending and the full-frame paste-back live in ``tcve.align``; the
pipeline pastes the tuned crops through ``paste_alphas`` (inside the dilated face mask, as STIT does).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import Cancelled
from .steps import make_adam

logger = logging.getLogger(__name__)

__all__ = ["StitchConfig", "StitchMasks", "StitchResult", "ellipse_face_mask", "stitch_masks",
           "blend", "paste_alphas", "stitch_tune"]

MaskFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class StitchConfig:
    """Defaults = VideoEditGAN README (STIT): 50 steps, Adam 3e-4, content weight 0.01, L2, all layers tuned."""

    steps: int = 50                       # README 50 (STIT script default 30)
    lr: float = 3e-4
    content_weight: float = 0.01
    mask_scale: float = 0.5               # masks computed at this fraction of the crop (official 512 for 1024)
    fg_dilation_px: int = 51              # VideoEditGAN's extra square dilation of the face mask (at 512)
    full_dilation_px: int = 75            # STIT: full = dilate(fg, 75) (at 512)
    border_px: int = 37                   # STIT: 75 // 2 (at 512)
    feather_erode_px: int = 75            # paste alpha: erosion (at 512)
    feather_blur_px: int = 75             # paste alpha: Gaussian kernel (at 512)
    frames_per_copy: int = 1              # 1 = official (one tuned copy per frame); k > 1 shares a copy over k frames
    frames_per_step: int = 8              # copies tuned together in one step (vmap over stacked weights); 1 = one
                                          # copy at a time (today's loop). Same result either way (tested, 1e-5)
    freeze_high_res: bool = False         # STIT's freezed_layers.txt (a no-op in the official run: name mismatch)
    noise_mode: str = "const"
    amp: Literal["none", "bf16", "fp16"] = "none"
    # What goes back into the frame: 'face_mask' (STIT: the tuned crop inside the dilated face mask, through the
    # feathered alpha; the generated background nobody constrained stays out) or 'crop' (the whole crop with the
    # paste-back's edge feather only)
    paste: Literal["face_mask", "crop"] = "face_mask"
    fused_adam: bool = True               # fused Adam: no host read per step (False = torch's default Adam)


@dataclass
class StitchMasks:
    """All ``[T,1,S,S]`` in [0,1] at crop resolution: fg (dilated face), full, border, content, alpha (paste)."""

    fg: torch.Tensor
    full: torch.Tensor
    border: torch.Tensor
    content: torch.Tensor
    alpha: torch.Tensor


@dataclass
class StitchResult:
    """images: tuned crops ``[T,3,S,S]`` in [-1,1]; blended: images alpha-blended onto the original crops;
    masks; history: per-group ``border``/``content`` losses (first and last step); seconds."""

    images: torch.Tensor
    blended: torch.Tensor
    masks: StitchMasks
    history: dict[str, list[float]]
    seconds: float


def ellipse_face_mask(crops: torch.Tensor, center: tuple[float, float] = (0.5, 0.54),
                      radii: tuple[float, float] = (0.33, 0.42), softness: float = 0.04) -> torch.Tensor:
    """Landmark-free stand-in for a face parser on FFHQ-aligned crops: soft ellipse ``[B,1,H,W]``.

    center / radii as fractions of the crop (x, y); softness: width of the sigmoid edge (fraction of the radius).
    """
    b, _, h, w = crops.shape
    ys = (torch.arange(h, device=crops.device, dtype=torch.float32) + 0.5) / h
    xs = (torch.arange(w, device=crops.device, dtype=torch.float32) + 0.5) / w
    d = ((xs[None, :] - center[0]) / radii[0]) ** 2 + ((ys[:, None] - center[1]) / radii[1]) ** 2
    mask = torch.sigmoid((1.0 - d.sqrt()) / softness)
    return mask.expand(b, 1, h, w).contiguous()


def _odd(px: float) -> int:
    k = max(1, int(round(px)))
    return k if k % 2 else k + 1


def _dilate(m: torch.Tensor, k: int) -> torch.Tensor:
    return F.max_pool2d(m, k, stride=1, padding=k // 2) if k > 1 else m


def _erode(m: torch.Tensor, k: int) -> torch.Tensor:
    return -F.max_pool2d(-m, k, stride=1, padding=k // 2) if k > 1 else m


def _gaussian_blur(m: torch.Tensor, k: int) -> torch.Tensor:
    if k <= 1:
        return m
    sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8       # OpenCV's rule for sigma=0
    x = torch.arange(k, device=m.device, dtype=m.dtype) - k // 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    m = F.conv2d(F.pad(m, (k // 2, k // 2, 0, 0), mode="replicate"), g.view(1, 1, 1, k))
    return F.conv2d(F.pad(m, (0, 0, k // 2, k // 2), mode="replicate"), g.view(1, 1, k, 1))


def stitch_masks(face: torch.Tensor, size: int, config: StitchConfig | None = None) -> StitchMasks:
    """Face masks ``[T,1,h,w]`` (any resolution, soft or binary) -> STIT masks at ``size`` (crop resolution)."""
    cfg = config or StitchConfig()
    res = max(8, int(round(size * cfg.mask_scale)))
    scale = res / 512.0
    fg = (F.interpolate(face.float(), size=(res, res), mode="bilinear", align_corners=False) > 0.5).float()
    fg = _dilate(fg, _odd(cfg.fg_dilation_px * scale))
    full = _dilate(fg, _odd(cfg.full_dilation_px * scale))
    bw = max(1, int(round(cfg.border_px * scale)))
    edge = torch.ones_like(fg)
    edge[..., bw:-bw, bw:-bw] = 0.0
    border = torch.maximum(fg * edge, full - fg).clamp(0, 1)
    content = (fg - border).clamp(0, 1)
    alpha = _gaussian_blur(_erode(full, _odd(cfg.feather_erode_px * scale)), _odd(cfg.feather_blur_px * scale))

    def up(m: torch.Tensor) -> torch.Tensor:
        return F.interpolate(m, size=(size, size), mode="bilinear", align_corners=True).clamp(0, 1)

    return StitchMasks(fg=up(fg), full=up(full), border=up(border), content=up(content), alpha=up(alpha))


def blend(images: torch.Tensor, crops: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Alpha-feathered composite in crop space: ``alpha * images + (1 - alpha) * crops``."""
    return alpha * images + (1.0 - alpha) * crops


def paste_alphas(result: StitchResult, config: StitchConfig | None = None) -> list[np.ndarray] | None:
    """Per-frame paste alphas ``[S,S]`` float32 in [0,1] (crop coordinates) for ``tcve.align.paste_frames``:
    ``masks.alpha`` for ``paste='face_mask'``, None (the whole crop) for ``paste='crop'``."""
    cfg = config or StitchConfig()
    if cfg.paste == "crop":
        return None
    if cfg.paste != "face_mask":
        raise ValueError(f"paste must be 'face_mask' or 'crop', got {cfg.paste!r}")
    return list(result.masks.alpha[:, 0].detach().float().cpu().numpy())


def _masked_sse(x: torch.Tensor, y: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    # STIT: sum over RGB of the masked squared error, normalised by the 1-channel mask sum.
    return ((x - y) * m).pow(2).sum() / m.sum().clamp_min(1e-8)


def _check_cancel(cancel: Callable[[], bool] | None) -> None:
    if cancel is not None and cancel():
        raise Cancelled("stitch tuning cancelled")


def _tune_one_by_one(generator, frozen, groups, latents, crops, edited, masks, cfg, amp, progress, cancel):
    """One copy at a time (``frames_per_step=1``): a working copy reset from the base weights for every group."""
    base_state = {k: v.detach().clone() for k, v in generator.state_dict().items()}
    work = copy.deepcopy(generator)
    params = [p for name, p in work.named_parameters() if not name.startswith("style.") and name not in frozen]
    work.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)

    def synth(w: torch.Tensor) -> torch.Tensor:
        with amp():
            return work.synthesis(w, noise_mode=cfg.noise_mode).float()

    out = torch.empty_like(edited)
    records = []
    for gi, (s0, s1) in enumerate(groups):
        _check_cancel(cancel)
        with torch.no_grad():
            work.load_state_dict(base_state, strict=False)
        opt = make_adam(params, cfg.lr, cfg.fused_adam)
        w = latents[s0:s1].detach()
        b, c, y, e = masks.border[s0:s1], masks.content[s0:s1], crops[s0:s1], edited[s0:s1]
        first = None
        for _ in range(cfg.steps):
            x = synth(w)
            lb = _masked_sse(x, y, b)
            lc = _masked_sse(x, e, c)
            loss = lb + cfg.content_weight * lc
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if first is None:
                first = lb.detach()
        with torch.no_grad():
            x = synth(w)
            out[s0:s1] = x
            records.append(torch.stack([first if first is not None else _masked_sse(x, y, b),
                                        _masked_sse(x, y, b), _masked_sse(x, e, c)]))
        if progress is not None:
            progress((gi + 1) / len(groups), f"stitch tuning: {s1}/{latents.shape[0]} frames")
    return out, records


class _Synthesis(nn.Module):
    """``g.synthesis`` as a module call, so ``torch.func.functional_call`` can swap in one copy's weights."""

    def __init__(self, g: nn.Module, noise_mode: str) -> None:
        super().__init__()
        self.g, self.noise_mode = g, noise_mode

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.g.synthesis(w, noise_mode=self.noise_mode)


def _tune_batched(generator, frozen, groups, latents, crops, edited, masks, cfg, amp, progress, cancel):
    """``frames_per_step`` copies per step: their tuned weights are stacked along a leading copy axis and the
    synthesis is vmapped over (weights, codes), so each copy still sees only its own frames' loss. Adam is
    elementwise, so one optimiser over the stacked weights is one optimiser per copy. A short last batch is padded
    to the batch's size (repeating its last group, results dropped) so every step has the same shapes."""
    from torch.func import functional_call, vmap

    module = _Synthesis(generator, cfg.noise_mode)
    base = {name: p.detach() for name, p in module.named_parameters()
            if not name.startswith("g.style.") and name[len("g."):] not in frozen}

    def synth_one(params: dict[str, torch.Tensor], w: torch.Tensor) -> torch.Tensor:
        with amp():
            return functional_call(module, params, (w,)).float()

    def copy_losses(params, w, y, e, b, c):
        x = synth_one(params, w)
        return _masked_sse(x, y, b), _masked_sse(x, e, c)

    losses, render = vmap(copy_losses), vmap(synth_one)
    out = torch.empty_like(edited)
    records: list[torch.Tensor] = [torch.empty(0)] * len(groups)
    # groups of equal length batch together (only the last group can be shorter)
    by_len: dict[int, list[int]] = {}
    for gi, (s0, s1) in enumerate(groups):
        by_len.setdefault(s1 - s0, []).append(gi)
    batches = []   # (groups, copies per step): a clip shorter than frames_per_step is not padded up to it
    for ids in by_len.values():
        per = min(cfg.frames_per_step, len(ids))
        batches += [(ids[s:s + per], per) for s in range(0, len(ids), per)]
    done = 0
    for batch, per in batches:
        _check_cancel(cancel)
        padded = batch + [batch[-1]] * (per - len(batch))
        idx = torch.stack([torch.arange(*groups[gi], device=latents.device) for gi in padded])  # [C, per copy]
        params = {name: p.unsqueeze(0).repeat(len(padded), *([1] * p.dim())).requires_grad_(True)
                  for name, p in base.items()}
        opt = make_adam(params.values(), cfg.lr, cfg.fused_adam)
        w = latents[idx].detach()
        y, e, b, c = crops[idx], edited[idx], masks.border[idx], masks.content[idx]
        first = None
        for _ in range(cfg.steps):
            lb, lc = losses(params, w, y, e, b, c)
            loss = (lb + cfg.content_weight * lc).sum()   # copies are independent: each gets its own gradient
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if first is None:
                first = lb.detach()
        with torch.no_grad():
            x = render(params, w)
            lb_last, lc_last = losses(params, w, y, e, b, c)
        first = lb_last if first is None else first
        for j, gi in enumerate(batch):
            s0, s1 = groups[gi]
            out[s0:s1] = x[j]
            records[gi] = torch.stack([first[j], lb_last[j], lc_last[j]])
        done += len(batch)
        if progress is not None:
            progress(done / len(groups), f"stitch tuning: {done}/{len(groups)} copies")
    return out, records


def stitch_tune(generator: nn.Module, latents: torch.Tensor, original_crops: torch.Tensor,
                config: StitchConfig | None = None, face_mask: MaskFn | None = None,
                edited: torch.Tensor | None = None, progress: Callable[[float, str], None] | None = None,
                cancel: Callable[[], bool] | None = None) -> StitchResult:
    """Tune copies of ``generator`` so each crop's border matches the original crop.

    generator: tuned G (never modified); latents ``[T,n_latent,D]``; original_crops: aligned crops of the original
    frames ``[T,3,H,W]`` in [-1,1] (resized to the generator size); face_mask(crops) -> ``[T,1,H,W]`` foreground
    (default ``ellipse_face_mask``); edited: the edit targets ``G(latents)`` if already rendered.
    Returns tuned crops (``images``) and their alpha blend onto the originals (``blended``).
    """
    cfg = config or StitchConfig()
    t0 = time.perf_counter()
    device = latents.device
    size = int(generator.size)
    n = latents.shape[0]
    crops = original_crops.to(device, torch.float32)
    if crops.shape[-1] != size:
        crops = F.interpolate(crops, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
    use_amp = amp_dtype is not None and device.type == "cuda"

    def amp() -> contextlib.AbstractContextManager:
        return torch.autocast(device.type, dtype=amp_dtype or torch.bfloat16, enabled=use_amp)

    def synth(g: nn.Module, w: torch.Tensor) -> torch.Tensor:
        with amp():
            return g.synthesis(w, noise_mode=cfg.noise_mode).float()

    with torch.no_grad():
        face = (face_mask or ellipse_face_mask)(crops)
        masks = stitch_masks(face, size, cfg)
        if edited is None:
            edited = torch.cat([synth(generator, latents[s:s + 8]) for s in range(0, n, 8)])
        edited = edited.to(device, torch.float32)
    k = max(1, cfg.frames_per_copy)
    groups = [(s, min(s + k, n)) for s in range(0, n, k)]
    frozen: set[str] = set(generator.frozen_for_out_of_domain()) if cfg.freeze_high_res else set()
    tune = _tune_batched if cfg.frames_per_step > 1 else _tune_one_by_one
    out, records = tune(generator, frozen, groups, latents, crops, edited, masks, cfg, amp, progress, cancel)
    hist: dict[str, list[float]] = {"border_first": [], "border_last": [], "content_last": []}
    if records:
        r = torch.stack(records).cpu()   # one host read for the whole stage
        hist = {"border_first": r[:, 0].tolist(), "border_last": r[:, 1].tolist(), "content_last": r[:, 2].tolist()}
    blended = blend(out, crops, masks.alpha)
    return StitchResult(images=out, blended=blended, masks=masks, history=hist, seconds=time.perf_counter() - t0)

"""Inversion of aligned face crops: encoder codes (e4e / pSp / ReStyle) and PTI generator tuning for a whole clip.

The paper inverts in-domain clips with PTI as its official code runs it (PTI's multi-ID coach, notes §3): e4e
pivots, computed once and kept fixed; one generator tuned jointly on all frames (200 passes over the clip, one frame
per Adam step, lr 3e-4) with ``1*L2 + 1*LPIPS-alex`` reconstruction and PTI's locality regulariser. Out-of-domain
clips are inverted with ReStyle only (no tuning), so StyleGAN-NADA generators can render the same codes.

Inputs are ``image`` tensors ``[T,3,H,W]`` in [-1,1] (aligned crops; the encoder resizes to 256 itself, the
reconstruction losses compare at the generator's resolution). Results are ``Inversion`` records; ``invert_video``
caches them by clip content + settings + checkpoint names (``tcve.cache``).
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .cache import StageCache, cache_key
from .losses import local_regularizer
from .steps import make_adam

logger = logging.getLogger(__name__)

__all__ = [
    "Progress",
    "EncoderInversionConfig",
    "PTIConfig",
    "InversionConfig",
    "IN_DOMAIN",
    "OUT_OF_DOMAIN",
    "ReconstructionMetrics",
    "Inversion",
    "encode_frames",
    "run_pti",
    "render",
    "reconstruction_metrics",
    "invert_video",
    "load_inversion_models",
]

Progress = Callable[[float, str], None]
EncoderKind = Literal["e4e", "psp", "restyle-e4e", "restyle-psp"]


def _no_progress(fraction: float, message: str) -> None:  # default sink
    return None


@dataclass(frozen=True)
class EncoderInversionConfig:
    """Feed-forward inversion (e4e for in-domain pivots, ReStyle for out-of-domain, as the paper)."""

    encoder: str = "e4e-ffhq"  # checkpoint registry name (e4e-ffhq | psp-ffhq | restyle-e4e-ffhq | restyle-psp-ffhq)
    kind: EncoderKind = "e4e"  # restyle-* iterate from the average image
    restyle_iters: int = 5  # ReStyle refinement steps (its default n_iters_per_batch)
    batch_size: int = 8  # frames per encoder call


@dataclass(frozen=True)
class PTIConfig:
    """PTI multi-ID coach as VideoEditGAN runs it (notes §3; PTI ``configs/hyperparameters.py``)."""

    steps: int = 200  # max_pti_steps: passes over all frames (official runs 200 * T optimiser steps)
    lr: float = 3e-4  # pti_learning_rate (Adam, default betas)
    batch_size: int = 1  # frames per optimiser step (official 1; >1 batches frames, a documented speed option):
    #   every pass still visits every frame once, so each frame gets the official number of visits
    l2_weight: float = 1.0  # pt_l2_lambda
    lpips_weight: float = 1.0  # pt_lpips_lambda (LPIPS-alex)
    use_locality_regularization: bool = True  # VideoEditGAN's coach regularises every step
    locality_interval: int = 1  # locality_regularization_interval
    locality_alpha: float = 30.0  # regulizer_alpha: fixed W+ distance from the pivot to the sampled code
    locality_l2_weight: float = 0.1  # regulizer_l2_lambda
    locality_lpips_weight: float = 0.1  # regulizer_lpips_lambda
    locality_psi: float = 0.5  # truncation of the sampled code w_s = mapping(z, psi)
    locality_samples: int = 1  # latent_ball_num_of_samples
    locality_per_frame: bool = True  # batch > 1: one regulariser draw around each frame's pivot (as many draws per
    #   frame as batch 1); False: around the batch's first pivot only (before issue 12)
    locality_noise_mode: str = "none"  # both generators render the regulariser codes without noise
    noise_mode: str = "const"  # reconstruction renders with the stored noise buffers
    loss_size: int | None = None  # compare at this resolution (None: the generator's; a speed option)
    shuffle: bool = False  # official order is sorted frames every pass
    seed: int = 0  # regulariser samples (and shuffling)
    progress_every: int = 0  # report every N steps (0: about 100 reports in total)
    fused_adam: bool = True  # fused Adam: no host read per step (False = torch's default Adam, same maths)

    @classmethod
    def fast(cls, **overrides: Any) -> PTIConfig:
        """FAST PTI (not the official setting): 50 passes of 4 frames per step (16x fewer optimiser steps, 4x fewer
        visits per frame), lr 1e-3 to make up for the fewer steps. Its reconstruction against the official 200 x 1
        is measured in ``bench/results/pti/`` (``python -m bench.pti_quality``)."""
        return replace(cls(steps=50, batch_size=4, lr=1e-3), **overrides)


@dataclass(frozen=True)
class InversionConfig:
    """Which inversion a clip gets: encoder codes, optionally followed by PTI."""

    encoder: EncoderInversionConfig = EncoderInversionConfig()
    pti: PTIConfig | None = PTIConfig()  # None: encoder codes only (the out-of-domain path)
    generator: str = "stylegan2-ffhq-1024"  # registry name of the base generator
    metrics_batch_size: int = 4


# The paper's two inversions: e4e pivots + PTI for in-domain edits; ReStyle-pSp codes on the untuned FFHQ generator
# for out-of-domain edits (StyleGAN-NADA generators were fine-tuned from it, so they render the same codes).
IN_DOMAIN = InversionConfig()
OUT_OF_DOMAIN = InversionConfig(encoder=EncoderInversionConfig(encoder="restyle-psp-ffhq", kind="restyle-psp"),
                                pti=None)


@dataclass(frozen=True)
class ReconstructionMetrics:
    """Reconstruction quality against the aligned input (means over frames) and time per frame."""

    lpips: float
    psnr: float  # dB, images mapped to [0,1]
    seconds_per_frame: float
    lpips_per_frame: tuple[float, ...] = ()
    psnr_per_frame: tuple[float, ...] = ()


@dataclass
class Inversion:
    """w_plus [T,n_latent,D] codes, the generator that renders them (PTI-tuned or the base), metrics."""

    w_plus: torch.Tensor
    generator: nn.Module
    metrics: ReconstructionMetrics | None = None
    pti_losses: torch.Tensor | None = None  # [steps] mean reconstruction loss per pass (PTI only)
    config: InversionConfig | None = None
    tuned: bool = False
    from_cache: bool = False
    timings: dict[str, float] = field(default_factory=dict)  # seconds: encode, pti, metrics


# ----------------------------------------------------------------------------- encoders


def encode_frames(encoder: nn.Module, images: torch.Tensor, config: EncoderInversionConfig = EncoderInversionConfig(),
                  progress: Progress | None = None) -> torch.Tensor:
    """images [T,3,H,W] in [-1,1] -> w_plus [T,n_latent,D], batched, no gradient.

    ReStyle encoders get ``n_iters=config.restyle_iters`` (their decoder refines from the average image).
    """
    progress = progress or _no_progress
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [T,3,H,W], got {tuple(images.shape)}")
    device = _module_device(encoder, images.device)
    out = []
    n = images.shape[0]
    bs = max(1, config.batch_size)
    with torch.no_grad():
        for start in range(0, n, bs):
            batch = images[start:start + bs].to(device, torch.float32)
            if config.kind.startswith("restyle"):
                codes = encoder(batch, n_iters=config.restyle_iters)
            else:
                codes = encoder(batch)
            if isinstance(codes, (tuple, list)):  # tolerate (codes, extra) returns
                codes = codes[0]
            out.append(codes.float())
            progress(min(start + bs, n) / n, f"encoding frames {min(start + bs, n)}/{n}")
    w_plus = torch.cat(out)
    if w_plus.ndim != 3:
        raise ValueError(f"encoder must return w_plus [B,n_latent,D], got {tuple(w_plus.shape)}")
    return w_plus


# ----------------------------------------------------------------------------- rendering / metrics


def _module_device(module: nn.Module, default: torch.device) -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return default


def render(generator: nn.Module, w_plus: torch.Tensor, batch_size: int = 4, noise_mode: str = "const",
           progress: Progress | None = None) -> torch.Tensor:
    """w_plus [T,n_latent,D] -> images [T,3,S,S] (no gradient, batched; returned on the generator's device)."""
    progress = progress or _no_progress
    device = _module_device(generator, w_plus.device)
    out = []
    n = w_plus.shape[0]
    with torch.no_grad():
        for start in range(0, n, max(1, batch_size)):
            out.append(generator.synthesis(w_plus[start:start + batch_size].to(device), noise_mode=noise_mode))
            progress(min(start + batch_size, n) / n, f"rendering {min(start + batch_size, n)}/{n}")
    return torch.cat(out)


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    mode = "area" if images.shape[-1] > size else "bilinear"
    return F.interpolate(images, size=(size, size), mode=mode, **({} if mode == "area" else {"align_corners": False}))


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of [B,3,H,W] images in [-1,1] (mapped to [0,1])."""
    mse = (((x.clamp(-1, 1) - y.clamp(-1, 1)) * 0.5) ** 2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-12))


def reconstruction_metrics(generator: nn.Module, w_plus: torch.Tensor, images: torch.Tensor, lpips: nn.Module,
                           batch_size: int = 4, seconds_per_frame: float = float("nan"),
                           noise_mode: str = "const") -> ReconstructionMetrics:
    """LPIPS (spatial mean) and PSNR of G(w_plus) against the aligned inputs, compared at the generator's size."""
    device = _module_device(generator, w_plus.device)
    lp, ps = [], []
    with torch.no_grad():
        for start in range(0, w_plus.shape[0], batch_size):
            rec = generator.synthesis(w_plus[start:start + batch_size].to(device), noise_mode=noise_mode)
            target = _resize(images[start:start + batch_size].to(device, torch.float32), rec.shape[-1])
            lp.append(lpips(rec, target).flatten(1).mean(1))
            ps.append(psnr(rec, target))
    lp_t, ps_t = torch.cat(lp).cpu(), torch.cat(ps).cpu()
    return ReconstructionMetrics(float(lp_t.mean()), float(ps_t.mean()), float(seconds_per_frame),
                                 tuple(lp_t.tolist()), tuple(ps_t.tolist()))


# ----------------------------------------------------------------------------- PTI


def _frame_orders(n: int, passes: int, shuffle: bool, seed: int) -> torch.Tensor:
    """Frame order of every pass ``[passes, n]``: sorted (official), or a seeded permutation per pass."""
    if not shuffle:
        return torch.arange(n).expand(passes, n).contiguous()
    rng = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(n, generator=rng) for _ in range(passes)]) if passes else \
        torch.empty(0, n, dtype=torch.long)


def run_pti(generator: nn.Module, images: torch.Tensor, pivots: torch.Tensor, lpips: nn.Module,
            config: PTIConfig = PTIConfig(), progress: Progress | None = None) -> tuple[nn.Module, torch.Tensor]:
    """Tune a copy of ``generator`` on all frames of a clip around fixed pivots (PTI multi-ID coach).

    images [T,3,H,W] in [-1,1]; pivots w_plus [T,n_latent,D] (e4e codes, not optimised). Each pass visits every frame
    once in order (batches of ``config.batch_size``); per step
    ``l2_weight*MSE(G(w_i), x_i) + lpips_weight*LPIPS(G(w_i), x_i) + L_loc`` with
    ``L_loc = local_regularizer(G, G_orig, w_i, alpha=30, 0.1*MSE + 0.1*LPIPS, psi=0.5, noise 'none')``.
    Returns (tuned generator in eval mode, mean reconstruction loss per pass [steps] on the CPU).
    """
    progress = progress or _no_progress
    if images.shape[0] != pivots.shape[0]:
        raise ValueError(f"{images.shape[0]} frames but {pivots.shape[0]} pivots")
    device = _module_device(generator, pivots.device)
    g_orig = generator
    g = copy.deepcopy(generator).to(device).train()
    g.requires_grad_(True)
    lpips = lpips.to(device)
    optim = make_adam([p for p in g.parameters() if p.requires_grad], config.lr, config.fused_adam)
    size = config.loss_size or g.size
    targets = _resize(images.to(device, torch.float32), size)
    pivots = pivots.to(device, torch.float32).detach()
    n = pivots.shape[0]
    bs = max(1, config.batch_size)
    steps_per_pass = math.ceil(n / bs)
    total = config.steps * steps_per_pass
    report_every = config.progress_every or max(1, total // 100)
    rng = torch.Generator(device=device).manual_seed(config.seed)
    orders = _frame_orders(n, config.steps, config.shuffle, config.seed).to(device)   # [passes, T], built once
    pass_losses = torch.zeros(config.steps, device=device)
    step = 0
    for p in range(config.steps):
        for start in range(0, n, bs):
            idx = orders[p, start:start + bs]
            w = pivots[idx]
            out = g.synthesis(w, noise_mode=config.noise_mode)
            out = _resize(out, size)
            target = targets[idx]
            rec = config.l2_weight * F.mse_loss(out, target) + config.lpips_weight * lpips(out, target).mean()
            loss = rec
            if config.use_locality_regularization and step % max(1, config.locality_interval) == 0:
                # official batch is one frame: the regulariser is centred on that frame's pivot
                center = (w if config.locality_per_frame else w[:1]).repeat(config.locality_samples, 1, 1)
                loss = loss + local_regularizer(
                    g, g_orig, center, lpips, alpha=config.locality_alpha, l2_weight=config.locality_l2_weight,
                    lpips_weight=config.locality_lpips_weight, psi=config.locality_psi,
                    n_samples=center.shape[0], noise_mode=config.locality_noise_mode, generator=rng)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            pass_losses[p] += rec.detach() * idx.numel() / n
            step += 1
            if step % report_every == 0 or step == total:
                progress(step / total, f"PTI step {step}/{total} (pass {p + 1}/{config.steps})")
    g.eval().requires_grad_(False)
    return g, pass_losses.cpu()


# ----------------------------------------------------------------------------- whole clip


def load_inversion_models(config: InversionConfig = InversionConfig(),
                          device: str | torch.device = "cpu") -> tuple[nn.Module, nn.Module]:
    """(generator, encoder) from the checkpoint registry (raises ``CheckpointUnavailable`` with a how-to)."""
    from . import checkpoints
    from .models import load_encoder, load_generator

    generator = load_generator(checkpoints.fetch(config.generator)).to(device)
    encoder = load_encoder(checkpoints.fetch(config.encoder.encoder)).to(device)
    return generator, encoder


def _entry_to_inversion(entry: dict[str, Any], generator: nn.Module, config: InversionConfig) -> Inversion:
    g = generator
    if entry.get("generator_state") is not None:
        g = copy.deepcopy(generator)
        g.load_state_dict(entry["generator_state"])
        g.eval().requires_grad_(False)
    device = _module_device(generator, torch.device("cpu"))
    m = entry.get("metrics")
    metrics = None
    if m is not None:
        metrics = ReconstructionMetrics(float(m["lpips"]), float(m["psnr"]), float(m["seconds_per_frame"]),
                                        tuple(m["lpips_per_frame"].tolist()), tuple(m["psnr_per_frame"].tolist()))
    return Inversion(entry["w_plus"].to(device), g, metrics, entry.get("pti_losses"), config,
                     tuned=entry.get("generator_state") is not None, from_cache=True,
                     timings={k: float(v) for k, v in entry.get("timings", {}).items()})


def invert_video(images: torch.Tensor, generator: nn.Module, encoder: nn.Module, lpips: nn.Module,
                 config: InversionConfig = InversionConfig(), *, cache: StageCache | None = None,
                 content_hash: str | None = None, checkpoint_names: Sequence[str] | None = None,
                 progress: Progress | None = None) -> Inversion:
    """Encoder codes for every frame, then (if ``config.pti``) PTI; metrics; cached when ``cache`` and a hash are given.

    images [T,3,H,W] in [-1,1]; ``content_hash`` identifies the clip (``tcve.cache.hash_frames`` of the aligned
    crops); ``checkpoint_names`` default to the config's generator and encoder names (pass others when the models
    were not loaded from the registry). Progress: 0-0.1 encoding, 0.1-0.95 PTI, then metrics.
    """
    progress = progress or _no_progress
    names = tuple(checkpoint_names) if checkpoint_names is not None else (config.generator, config.encoder.encoder)
    key = None
    if cache is not None and content_hash is not None:
        key = cache_key(content_hash, config, names, stage="inversion")
        entry = cache.load("inversion", key)
        if entry is not None:
            progress(1.0, "inversion loaded from cache")
            return _entry_to_inversion(entry, generator, config)
    device = _module_device(generator, images.device)
    n = images.shape[0]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    t0 = time.perf_counter()
    pivots = encode_frames(encoder, images, config.encoder, lambda f, m: progress(0.1 * f, m)).to(device)
    sync()
    t_enc = time.perf_counter() - t0
    g, losses, t_pti = generator, None, 0.0
    if config.pti is not None:
        t1 = time.perf_counter()
        g, losses = run_pti(generator, images, pivots, lpips, config.pti, lambda f, m: progress(0.1 + 0.85 * f, m))
        sync()
        t_pti = time.perf_counter() - t1
    t2 = time.perf_counter()
    progress(0.95, "measuring reconstruction")
    metrics = reconstruction_metrics(g, pivots, images, lpips, config.metrics_batch_size,
                                     seconds_per_frame=(t_enc + t_pti) / n)
    t_metrics = time.perf_counter() - t2
    timings = {"encode": t_enc, "pti": t_pti, "metrics": t_metrics}
    logger.info("inversion of %d frames: LPIPS %.4f, PSNR %.2f dB, %.3f s/frame", n, metrics.lpips, metrics.psnr,
                metrics.seconds_per_frame)
    inversion = Inversion(pivots, g, metrics, losses, config, tuned=config.pti is not None, timings=timings)
    if key is not None:
        cache.save("inversion", key, {
            "w_plus": pivots,
            "generator_state": g.state_dict() if config.pti is not None else None,
            "pti_losses": losses,
            "metrics": {**{k: v for k, v in asdict(metrics).items() if not isinstance(v, tuple)},
                        "lpips_per_frame": torch.tensor(metrics.lpips_per_frame),
                        "psnr_per_frame": torch.tensor(metrics.psnr_per_frame)},
            "timings": timings,
        })
    progress(1.0, "inversion done")
    return inversion


def with_pti_steps(config: InversionConfig, steps: int) -> InversionConfig:
    """A copy of ``config`` with ``steps`` PTI passes (preview presets)."""
    return replace(config, pti=replace(config.pti or PTIConfig(), steps=steps))

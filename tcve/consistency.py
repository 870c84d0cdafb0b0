"""Flow-based two-phase temporal consistency (paper Sec. 3.2-3.3, Eq. 1-8; official ``scripts/temp_consist.py``).

Phase 1 refines the direct-edit codes through an MLP predicting a scaled residual, ``W^ = W + alpha * M(W)``
(Eq. 2-4); phase 2 tunes a copy of the generator on the refined codes (Eq. 5 in-domain, Eq. 8 out-of-domain with the
last eight synthesis layers frozen). Every step optimises pairs (anchor, i), the anchor being the middle frame.

Configuration: ``ConsistencyConfig.in_domain()`` reproduces the official code (which produced the published in-domain
numbers), ``.out_of_domain()`` uses the paper's out-of-domain settings (the official out-of-domain path does not run)
on the official implementation details, ``.paper()`` follows the paper text everywhere. Each difference is a named
field; ``OPTION_TABLE`` lists them (README). ``.fast()`` adds the speed options that change the optimisation
(several pairs per step, bf16 generator, masks at the working resolution).

Speed: the anchor is rendered once per step for all pairs of the step, flows of both directions run as one batch,
constant tensors (downsampled inputs, the phase-1 reference anchor, phase-2 frozen anchor mask) are cached on the
device, the loop has no disk I/O and no host synchronisation except at progress reports.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .errors import Cancelled
from .flow import FlowEstimator, fb_consistency_error, visibility_mask, warp
from .steps import make_adam, maybe_compile
from .losses import (
    fb_consistency_loss,
    flow_tv,
    fuse_masks,
    latent_residual_loss,
    local_regularizer,
    out_of_mask_loss,
    photometric_loss,
)

logger = logging.getLogger(__name__)

__all__ = [
    "Phase1Config",
    "Phase2Config",
    "ConsistencyConfig",
    "ConsistencyResult",
    "PhaseResult",
    "OPTION_TABLE",
    "option_table_markdown",
    "anchor_index",
    "edit_alpha",
    "fresh_mapper",
    "run_consistency",
    "phase1_only",
    "phase2_only",
    "run_phase1",
    "run_phase2",
    "render",
]

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]


# ---------------------------------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class Phase1Config:
    """Phase 1: latent refinement through the mapper MLP (Eq. 2-4). Defaults = official in-domain (README)."""

    epochs: int = 10                      # paper in-domain 10, out-of-domain 5
    lr: float = 1e-3                      # Adam lr on the MLP (official README 1e-3; paper 0.05 in / 0.005 out)
    alpha: float = 0.05                   # residual scale (official: eyeglasses 0.05, others 0.04; paper: 0.12)
    lambda_rf: float = 0.2                # L_rf weight (official 0.2; paper 0.1)
    rf_mode: Literal["mean", "l1"] = "mean"   # L_rf reduction: mean |delta| (official) or per-sample L1 norm
    w_photo: float = 1.0
    lambda_eps: float = 10.0              # forward-backward error weight (both: 10)
    w_out: float = 0.5                    # out-of-mask LPIPS to the input (official phase 1 has it; paper Eq. 3 none)
    w_tv: float = 0.0                     # flow TV (official flag, 0 in the README)
    freeze_anchor: bool = True            # official: anchor image for flow/photo = direct-edit anchor, constant
    pd_mask_source: Literal["warped_anchor", "own"] = "warped_anchor"  # frame-i PD mask: official warp(P_a, F_ai)
    fresh_mapper_levels: tuple[bool, bool, bool] = (True, True, True)   # coarse/medium/fine of a fresh mapper
    # A fresh zero-residual mapper (no pretrained one: directions, styles, text; the official code always has one).
    # With StyleCLIP's EqualLinear lr_mul 0.01 and lr 1e-3 its effective weights move ~4e-7 per step and phase 1
    # does nothing. Fresh mappers get lr_mul 1 (StyleGAN's plain equalised lr; same function at start) and the
    # paper's phase-1 lr (0.05; out-of-domain presets 0.005) (None: ``lr``). fresh_mapper_lr_mul=0.01,
    # fresh_mapper_lr=None, fresh_mapper_rf='output' restore the old path.
    # L_rf of a fresh mapper on its applied residual alpha*M(W) ('residual'): a fresh mapper's output M is not an
    # edit, and L_rf on M ('output', official) costs 1/alpha per unit the codes move, so phase 1 stays put.
    fresh_mapper_lr_mul: float = 1.0
    fresh_mapper_lr: float | None = 0.05
    fresh_mapper_rf: Literal["output", "residual"] = "residual"


@dataclass(frozen=True)
class Phase2Config:
    """Phase 2: generator tuning (Eq. 5 / Eq. 8). Defaults = official in-domain (README)."""

    epochs: int = 3                       # official README 3; paper 5
    lr: float = 1e-4                      # official 1e-4; paper in 1e-4, out 8e-4
    w_photo: float = 1.0
    lambda_eps: float = 10.0
    w_out: float = 0.5                    # L_M base weight (official flag 0.5)
    out_mask_boost: float = 15.0          # official multiplies w_out by 15 inside phase 2; paper 1
    out_mask_power: float = 4.0           # official (1-P)^4; paper (1-P)
    out_mask_source: Literal["warped_anchor", "own"] = "warped_anchor"  # frame-i L_M weight: official warped anchor
    anchor_mask: Literal["frozen", "own"] = "frozen"   # anchor PD mask: official from frozen G0 (constant); paper own
    lambda_r: float = 100.0               # locality regulariser (official README 100; paper 200)
    reg_center: Literal["anchor", "frame"] = "anchor"  # official: around the anchor code; paper: current frame
    reg_alpha: float = 30.0               # interpolation step (PTI's 30)
    reg_l2_weight: float = 0.1            # official 0.1 (PTI); paper: lambda_l2 unstated
    reg_lpips_weight: float = 0.1         # official 0.1; paper 1
    reg_psi: float = 0.5
    reg_noise_mode: str = "none"
    reg_samples: int = 1
    freeze_last_layers: bool = False      # paper out-of-domain: freeze the last eight synthesis layers
    w_tv: float = 0.0


@dataclass(frozen=True)
class ConsistencyConfig:
    """Whole consistency stage. ``in_domain()`` / ``out_of_domain()`` / ``paper()`` build the presets."""

    domain: Literal["in", "out"] = "in"
    phase1: Phase1Config = field(default_factory=Phase1Config)
    phase2: Phase2Config = field(default_factory=Phase2Config)
    run_phase1: bool = True
    run_phase2: bool = True
    use_pd_masks: bool = True             # in-domain perceptual-difference masks (out-of-domain: visibility only)
    visibility_k: float = 5.0             # exp(-k*eps): official 5, paper 10
    photometric_range: Literal["255", "unit"] = "255"   # photometric LPIPS input: official [0,255], paper [-1,1]
    eps_mode: Literal["masked", "l1"] = "masked"       # L_eps: official <eps, M>, paper plain mean |eps|
    # warp of the photometric loss and the warped anchor masks: official flow_warp (align_corners=False on a
    # (W-1)-normalised grid, edge-touching samples zeroed) or 'aligned' (exact identity at zero flow); the
    # forward-backward error always uses the aligned sampler, as the official occlusion() does
    warp_convention: Literal["official", "aligned"] = "official"
    scale_factor: int = 4                 # working resolution = size / scale_factor (official 4: 1024 -> 256)
    downsample_mode: str = "nearest"      # official F.interpolate default (nearest)
    pd_mask_resolution: Literal["full", "working"] = "full"  # official: LPIPS mask at 1024, then downsampled
    flow_grad: bool = True                # official: gradients flow through RAFT into the frames
    pairs_per_step: int = 1               # (anchor, i) pairs per optimiser step; 1 = official
    noise_mode: str = "const"
    seed: int = 0
    amp: Literal["none", "bf16", "fp16"] = "none"   # autocast for the generator on CUDA
    tf32: bool = True                     # TF32 matmul/conv on CUDA
    compile: bool = False                 # torch.compile the generator synthesis
    render_batch: int = 8                 # batch for the final rendering
    return_images: bool = True
    progress_every: int = 10              # steps between progress reports (a host read of the loss each)
    fused_adam: bool = True               # fused Adam: no host read per step (False = torch's default Adam)

    # ----- presets -----
    @classmethod
    def in_domain(cls, edit: str | None = None, **overrides) -> ConsistencyConfig:
        """Official code (README command): produced the paper's in-domain numbers."""
        cfg = cls(domain="in", phase1=Phase1Config(alpha=edit_alpha(edit, "official")))
        return replace(cfg, **overrides)

    @classmethod
    def out_of_domain(cls, **overrides) -> ConsistencyConfig:
        """Paper Sec. 4.2 hyper-parameters (the official out-of-domain path does not run) on the official
        implementation details (exp(-5 eps), [0,255] photometric LPIPS, 256^2, frozen phase-1 anchor)."""
        cfg = cls(
            domain="out",
            use_pd_masks=False,
            phase1=Phase1Config(epochs=5, lr=0.005, alpha=0.04, lambda_rf=0.1, w_out=0.0, fresh_mapper_lr=0.005),
            phase2=Phase2Config(epochs=5, lr=8e-4, lambda_r=200.0, w_out=0.0, freeze_last_layers=True),
        )
        return replace(cfg, **overrides)

    @classmethod
    def paper(cls, domain: Literal["in", "out"] = "in", edit: str | None = None, **overrides) -> ConsistencyConfig:
        """The paper's text everywhere (Sec. 3.2-3.3, 4.2-4.3)."""
        inn = domain == "in"
        p1 = Phase1Config(
            epochs=10 if inn else 5, lr=0.05 if inn else 0.005, alpha=edit_alpha(edit, "paper") if inn else 0.04,
            lambda_rf=0.1, w_out=0.0, freeze_anchor=False, pd_mask_source="own", fresh_mapper_lr=0.05 if inn else 0.005,
        )
        p2 = Phase2Config(
            epochs=5, lr=1e-4 if inn else 8e-4, w_out=0.5 if inn else 0.0, out_mask_boost=1.0, out_mask_power=1.0,
            out_mask_source="own", anchor_mask="own", lambda_r=200.0, reg_center="frame", reg_lpips_weight=1.0,
            freeze_last_layers=not inn,
        )
        cfg = cls(domain=domain, phase1=p1, phase2=p2, use_pd_masks=inn, visibility_k=10.0,
                  photometric_range="unit", eps_mode="l1", warp_convention="aligned")
        return replace(cfg, **overrides)

    def fast(self, pairs_per_step: int = 8) -> ConsistencyConfig:
        """Speed options that change the optimisation: several pairs per step, bf16 G, masks at working res."""
        return replace(self, pairs_per_step=pairs_per_step, amp="bf16", pd_mask_resolution="working")

    def __post_init__(self) -> None:
        if self.pairs_per_step < 1:
            raise ValueError("pairs_per_step must be >= 1")
        if self.scale_factor < 1:
            raise ValueError("scale_factor must be >= 1")
        if self.domain not in ("in", "out"):
            raise ValueError(f"domain must be 'in' or 'out', got {self.domain!r}")


_OFFICIAL_ALPHA = {"eyeglasses": 0.05}
_PAPER_ALPHA = {"eyeglasses": 0.12}


def edit_alpha(edit: str | None, source: Literal["official", "paper"] = "official") -> float:
    """Eq. 2 residual scale per edit: 0.05 (official) / 0.12 (paper) for eyeglasses, 0.04 otherwise."""
    table = _OFFICIAL_ALPHA if source == "official" else _PAPER_ALPHA
    return table.get((edit or "").lower(), 0.04)


# (option, official in-domain default, paper) -- rendered into the README by the lead.
OPTION_TABLE: tuple[tuple[str, str, str], ...] = (
    ("visibility_k", "5 (exp(-5 eps), eps in px at 256^2)", "10"),
    ("photometric_range", "'255' (LPIPS fed [0,255])", "'unit' ([-1,1])"),
    ("eps_mode", "'masked' (mask-weighted mean of eps)", "'l1' (plain mean of eps)"),
    ("warp_convention", "'official' (align_corners=False on a (W-1)-normalised grid, edge samples zeroed)",
     "'aligned' (warp unstated; align_corners=True, zero flow = identity)"),
    ("scale_factor / downsample_mode", "4 / nearest (flow+losses at 256^2)", "unstated"),
    ("pd_mask_resolution", "'full' (LPIPS at 1024, nearest-downsampled)", "unstated"),
    ("flow_grad", "True (gradients through RAFT, 20 iters)", "True ('all differentiable')"),
    ("pairs_per_step", "1", "1"),
    ("phase1.freeze_anchor", "True (direct-edit anchor image)", "False (anchor refined too)"),
    ("phase1.pd_mask_source", "'warped_anchor' (warp(P_a, F_a->i))", "'own' (M_i^PD)"),
    ("phase1.w_out", "0.5", "0 (not in Eq. 3)"),
    ("phase1.lambda_rf / rf_mode", "0.2 / mean", "0.1 / mean (Eq. 4 L1, taken as mean)"),
    ("phase1.lr / epochs", "1e-3 / 10", "0.05 / 10 (out: 0.005 / 5)"),
    ("phase1.fresh_mapper_lr_mul / fresh_mapper_lr / fresh_mapper_rf", "1 / 0.05 (out: 0.005) / 'residual' (tcve: "
     "the code always has a pretrained mapper)", "1 / 0.05 (out: 0.005), its phase-1 lr / 'residual'"),
    ("phase1.alpha", "0.05 eyeglasses, 0.04 others", "0.12 eyeglasses, 0.04 others (out: 0.04)"),
    ("mapper", "the edit's pretrained StyleCLIP mapper (pass `mapper=`)",
     "'same architecture': fresh LevelsMapper, zero residual (`mapper=None`)"),
    ("phase2.lr / epochs", "1e-4 / 3", "1e-4 / 5 (out: 8e-4 / 5)"),
    ("phase2.out_mask_boost / out_mask_power", "15 / 4 ((1-P)^4, weight 7.5)", "1 / 1"),
    ("phase2.out_mask_source", "'warped_anchor'", "'own'"),
    ("phase2.anchor_mask", "'frozen' (P_a from G0)", "'own' (current G)"),
    ("phase2.lambda_r", "100", "200"),
    ("phase2.reg_center", "'anchor'", "'frame'"),
    ("phase2.reg_l2_weight / reg_lpips_weight", "0.1 / 0.1", "0.1 (unstated) / 1"),
    ("phase2.freeze_last_layers", "False (in); out-of-domain not runnable", "True for out-of-domain"),
)


def option_table_markdown() -> str:
    """``OPTION_TABLE`` as a Markdown table (README: official-code default vs paper)."""
    rows = ["| Option (`ConsistencyConfig`) | Official code (default, `in_domain()`) | Paper (`paper()`) |",
            "|---|---|---|"]
    rows += [f"| `{o}` | {a} | {b} |" if o != "mapper" else f"| mapper (argument) | {a} | {b} |"
             for o, a, b in OPTION_TABLE]
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------------------------------
# results


@dataclass
class PhaseResult:
    """Output of one phase: latents ``[T,n_latent,D]`` (refined), generator (tuned or the input), loss history."""

    latents: torch.Tensor
    generator: nn.Module
    history: dict[str, list[float]]
    mapper: nn.Module | None = None
    seconds: float = 0.0


@dataclass
class ConsistencyResult:
    """latents ``[T,n_latent,D]``; generator (tuned copy); images ``[T,3,S,S]`` in [-1,1] or None; history per phase."""

    latents: torch.Tensor
    generator: nn.Module
    images: torch.Tensor | None
    history: dict[str, dict[str, list[float]]]
    anchor: int
    seconds: dict[str, float]


# ---------------------------------------------------------------------------------------------------------------------
# helpers


def anchor_index(num_frames: int) -> int:
    """Official anchor: T//2 for odd T, T//2 - 1 for even T (the middle frame)."""
    if num_frames < 1:
        raise ValueError("need at least one frame")
    return num_frames // 2 if num_frames % 2 else num_frames // 2 - 1


def _pair_schedule(num_frames: int, anchor: int, pairs: int, epochs: int, seed: int) -> list[torch.Tensor]:
    """Per step, ``pairs`` non-anchor indices; a fresh permutation each epoch. The last chunk of an epoch is topped up
    with other frames of the same epoch so every step has the same batch (static shapes for compile / graphs)."""
    others = torch.tensor([t for t in range(num_frames) if t != anchor], dtype=torch.long)
    if len(others) == 0 or epochs <= 0:
        return []
    k = min(pairs, len(others))
    g = torch.Generator().manual_seed(seed)
    steps = []
    for _ in range(epochs):
        perm = others[torch.randperm(len(others), generator=g)]
        for s in range(0, len(perm), k):
            chunk = perm[s:s + k]
            if len(chunk) < k:
                chunk = torch.cat([chunk, perm[:k - len(chunk)]])
            steps.append(chunk)
    return steps


def _device_schedule(num_frames: int, anchor: int, pairs: int, epochs: int, seed: int,
                     device: torch.device) -> torch.Tensor:
    """``_pair_schedule`` as one ``[steps, pairs]`` index tensor on the device, built once per phase (steps then
    index it without host-to-device copies)."""
    steps = _pair_schedule(num_frames, anchor, pairs, epochs, seed)
    if not steps:
        return torch.empty(0, 0, dtype=torch.long, device=device)
    return torch.stack(steps).to(device)


def fresh_mapper(n_latent: int, style_dim: int, levels: tuple[bool, bool, bool] = (True, True, True),
                 lr_mul: float = 0.01) -> nn.Module:
    """A StyleCLIP LevelsMapper whose residual starts at exactly zero (last layer of each sub-mapper zeroed).

    Zero weight *and* bias of the last EqualLinear give sqrt(2)*lrelu(0) = 0 while its weight still gets gradients.
    lr_mul: the EqualLinear learning-rate multiplier (StyleCLIP's 0.01). The function at initialisation is the same
    for any value (stored weights are rescaled); only how far an optimiser step moves the effective weights changes.
    """
    from .models.mapper import LevelsMapper, MapperLinear

    coarse, medium, fine = levels
    mapper = LevelsMapper(no_coarse=not coarse, no_medium=not medium, no_fine=not fine, n_latent=n_latent,
                          style_dim=style_dim)
    with torch.no_grad():
        for child in mapper.children():
            linears = [m for m in child.modules() if isinstance(m, MapperLinear)]
            for layer in linears:   # same effective weights, new parameterisation
                ratio = layer.lr_mul / lr_mul
                layer.weight.mul_(ratio)
                layer.bias.mul_(ratio)
                layer.scale = layer.scale / layer.lr_mul * lr_mul
                layer.lr_mul = lr_mul
            if linears:
                linears[-1].weight.zero_()
                linears[-1].bias.zero_()
    return mapper


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """Temporarily turn off parameter gradients (the caller's module is restored afterwards)."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(module.parameters(), flags):
            p.requires_grad_(f)


@contextlib.contextmanager
def _tf32(enabled: bool) -> Iterator[None]:
    if not torch.cuda.is_available():
        yield
        return
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


class _Ctx:
    """Per-run state shared by the phases: config, device tensors cached once, rendering and flow helpers."""

    def __init__(self, generator: nn.Module, w_edit: torch.Tensor, aligned_inputs: torch.Tensor,
                 flow: FlowEstimator, lpips: nn.Module, cfg: ConsistencyConfig,
                 progress: ProgressFn | None, cancel: CancelFn | None) -> None:
        if w_edit.dim() != 3:
            raise ValueError(f"w_edit must be [T,n_latent,D], got {tuple(w_edit.shape)}")
        if aligned_inputs.dim() != 4 or aligned_inputs.shape[0] != w_edit.shape[0]:
            raise ValueError(f"aligned_inputs must be [T,3,H,W] with T={w_edit.shape[0]}, "
                             f"got {tuple(aligned_inputs.shape)}")
        self.cfg, self.flow, self.lpips = cfg, flow, lpips
        self.progress, self.cancel = progress, cancel
        self.device = w_edit.device
        self.size = int(generator.size)
        self.T = int(w_edit.shape[0])
        self.anchor = anchor_index(self.T)
        # LPIPS-alex needs >= 32 px (its pooling pyramid): floor the working resolution there.
        self.work = min(self.size, max(self.size // cfg.scale_factor, 32))
        inputs = aligned_inputs.to(self.device, torch.float32)
        if inputs.shape[-1] != self.size or inputs.shape[-2] != self.size:
            inputs = F.interpolate(inputs, size=(self.size, self.size), mode="bilinear", align_corners=False,
                                   antialias=True)
        self.inputs_full = inputs          # [T,3,S,S] (needed for full-resolution PD masks)
        self.inputs_work = self.down(inputs)  # cached: constant
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
        self.use_amp = self.amp_dtype is not None and self.device.type == "cuda"
        self.seed = cfg.seed
        self._compiled: dict[int, Callable] = {}
        self.anchor_idx = torch.tensor([self.anchor], device=self.device)

    # ----- image ops -----
    def down(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == self.work:
            return x
        return F.interpolate(x, size=(self.work, self.work), mode=self.cfg.downsample_mode)

    def render(self, g: nn.Module, w_plus: torch.Tensor, noise_mode: str | None = None) -> torch.Tensor:
        """G.synthesis under the configured autocast; float32 output ``[B,3,S,S]``."""
        fn = g.synthesis
        if self.cfg.compile:
            key = id(g)
            if key not in self._compiled:
                self._compiled[key] = maybe_compile(g.synthesis, True)
            fn = self._compiled[key]
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.bfloat16, enabled=self.use_amp):
            out = fn(w_plus, noise_mode=noise_mode or self.cfg.noise_mode)
        return out.float()

    def pd_mask(self, full: torch.Tensor, work: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Perceptual-difference mask ``[B,1,h,w]`` at the working resolution (LPIPS on [-1,1], raw, not clamped)."""
        if self.cfg.pd_mask_resolution == "full":
            return self.down(self.lpips(full, self.inputs_full[idx]))
        return self.lpips(work, self.inputs_work[idx])

    def flows(self, x_a: torch.Tensor, x_i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both directions in one batch: (F_a->i on the anchor grid, F_i->a on frame i's grid)."""
        k = x_i.shape[0]
        a = x_a.expand(k, -1, -1, -1)
        first, second = torch.cat([a, x_i]), torch.cat([x_i, a])
        if self.cfg.flow_grad:
            out = self.flow(first, second)
        else:
            with torch.no_grad():
                out = self.flow(first.detach(), second.detach())
        out = out.float()
        return out[:k], out[k:]

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel():
            raise Cancelled("temporal-consistency optimisation cancelled")

    def report(self, fraction: float, message: str) -> None:
        if self.progress is not None:
            self.progress(float(min(max(fraction, 0.0), 1.0)), message)


def _history(records: list[dict[str, torch.Tensor]]) -> dict[str, list[float]]:
    """Stack the per-step loss tensors once at the end (one host sync for the whole phase)."""
    if not records:
        return {}
    keys = records[0].keys()
    stacked = torch.stack([torch.stack([r[k] for k in keys]) for r in records]).cpu()
    return {k: stacked[:, j].tolist() for j, k in enumerate(keys)}


def _masks_and_photo(ctx: _Ctx, x_a: torch.Tensor, x_i: torch.Tensor, f_ai: torch.Tensor, f_ia: torch.Tensor,
                     pd_a: torch.Tensor | None, pd_i: torch.Tensor | None, lambda_eps: float, w_tv: float
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Visibility (+PD) masks, photometric loss (Eq. 1), L_eps and flow TV. Returns (photo, eps_loss, tv)."""
    cfg = ctx.cfg
    k = x_i.shape[0]
    e_i = fb_consistency_error(f_ia, f_ai)   # on frame i's grid (i -> a -> i)
    e_a = fb_consistency_error(f_ai, f_ia)   # on the anchor grid
    m_i = visibility_mask(e_i, cfg.visibility_k)
    m_a = visibility_mask(e_a, cfg.visibility_k)
    if pd_i is not None and pd_a is not None:
        m_i = fuse_masks(m_i, pd_i)
        m_a = fuse_masks(m_a, pd_a.expand(k, -1, -1, -1))
    photo = photometric_loss(ctx.lpips, x_a.expand(k, -1, -1, -1), x_i, f_ai, f_ia, m_a, m_i,
                             lpips_input_range=cfg.photometric_range, warp_convention=cfg.warp_convention)
    eps_loss = fb_consistency_loss(e_a, e_i, m_a, m_i, mode=cfg.eps_mode) if lambda_eps else photo.new_zeros(())
    tv = flow_tv(f_ai) + flow_tv(f_ia) if w_tv else photo.new_zeros(())
    return photo, eps_loss, tv


# ---------------------------------------------------------------------------------------------------------------------
# phase 1


def _run_phase1(ctx: _Ctx, g0: nn.Module, w_edit: torch.Tensor, mapper: nn.Module | None,
                frac0: float, frac1: float) -> PhaseResult:
    cfg, p1 = ctx.cfg, ctx.cfg.phase1
    t0 = time.perf_counter()
    n_latent, dim = w_edit.shape[1:]
    fresh = mapper is None
    if fresh:
        with torch.random.fork_rng(devices=[]):   # seeded, without touching the caller's global RNG
            torch.manual_seed(ctx.seed)
            mapper = fresh_mapper(n_latent, dim, p1.fresh_mapper_levels, p1.fresh_mapper_lr_mul)
    else:
        mapper = copy.deepcopy(mapper)   # the caller's pretrained mapper stays untouched
    mapper = mapper.to(ctx.device).float().train()
    mapper.requires_grad_(True)
    params = [p for p in mapper.parameters() if p.requires_grad]
    opt = make_adam(params, p1.fresh_mapper_lr if fresh and p1.fresh_mapper_lr is not None else p1.lr, cfg.fused_adam)
    a = ctx.anchor
    w_edit = w_edit.detach()
    use_pd = cfg.use_pd_masks
    need_anchor_render = use_pd or not p1.freeze_anchor
    with torch.no_grad():
        x_a0 = ctx.down(ctx.render(g0, w_edit[a:a + 1]))   # official: constant direct-edit anchor
    schedule = _device_schedule(ctx.T, a, cfg.pairs_per_step, p1.epochs, ctx.seed, ctx.device)
    records: list[dict[str, torch.Tensor]] = []
    a_idx = ctx.anchor_idx
    for step, idx in enumerate(schedule):
        ctx.check_cancel()
        w = torch.cat([w_edit[a:a + 1], w_edit[idx]])
        delta = mapper(w)
        w_hat = w + p1.alpha * delta
        if need_anchor_render:
            full = ctx.render(g0, w_hat)
            full_a, full_i = full[:1], full[1:]
        else:
            full_a, full_i = None, ctx.render(g0, w_hat[1:])
        x_i = ctx.down(full_i)
        x_a = x_a0 if p1.freeze_anchor else ctx.down(full_a)
        f_ai, f_ia = ctx.flows(x_a, x_i)
        pd_a = pd_i = pd_out = None
        if use_pd:
            pd_a = ctx.pd_mask(full_a, ctx.down(full_a), a_idx)     # carries gradient to the mapper (official)
            warped_a = warp(pd_a.expand(len(idx), -1, -1, -1), f_ai, convention=cfg.warp_convention)
            if p1.pd_mask_source == "warped_anchor":
                pd_i = pd_out = warped_a
            else:
                pd_i = pd_out = ctx.pd_mask(full_i, x_i, idx)
        photo, eps_loss, tv = _masks_and_photo(ctx, x_a, x_i, f_ai, f_ia, pd_a, pd_i, p1.lambda_eps, p1.w_tv)
        rf_delta = delta * p1.alpha if fresh and p1.fresh_mapper_rf == "residual" else delta
        rf = latent_residual_loss(rf_delta[1:], p1.rf_mode) + latent_residual_loss(rf_delta[:1], p1.rf_mode)
        if use_pd and p1.w_out:
            out = out_of_mask_loss(ctx.lpips, x_i, ctx.inputs_work[idx], pd_out, power=4.0)
        else:
            out = photo.new_zeros(())
        loss = p1.w_photo * photo + p1.lambda_eps * eps_loss + p1.lambda_rf * rf + p1.w_out * out + p1.w_tv * tv
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        records.append({"loss": loss.detach(), "photo": photo.detach(), "eps": eps_loss.detach(),
                        "rf": rf.detach(), "out": out.detach()})
        if (step + 1) % cfg.progress_every == 0 or step + 1 == len(schedule):
            frac = frac0 + (frac1 - frac0) * (step + 1) / len(schedule)
            ctx.report(frac, f"phase 1: step {step + 1}/{len(schedule)}, loss {loss.item():.4f}")
    mapper.eval()
    with torch.no_grad():
        latents = torch.cat([w_edit[s:s + 64] + p1.alpha * mapper(w_edit[s:s + 64])
                             for s in range(0, ctx.T, 64)]) if len(schedule) else w_edit.clone()
    return PhaseResult(latents=latents, generator=g0, history=_history(records), mapper=mapper,
                       seconds=time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------------------------------
# phase 2


def _trainable_copy(g0: nn.Module, freeze_last_layers: bool) -> tuple[nn.Module, list[nn.Parameter]]:
    """A copy of G with the synthesis parameters trainable (mapping excluded: it gets no gradient from W+)."""
    g = copy.deepcopy(g0)
    frozen = set(g.frozen_for_out_of_domain()) if freeze_last_layers else set()
    params = []
    for name, p in g.named_parameters():
        trainable = not name.startswith("style.") and name not in frozen
        p.requires_grad_(trainable)
        if trainable:
            params.append(p)
    return g, params


def _run_phase2(ctx: _Ctx, g0: nn.Module, latents: torch.Tensor, frac0: float, frac1: float) -> PhaseResult:
    cfg, p2 = ctx.cfg, ctx.cfg.phase2
    t0 = time.perf_counter()
    g, params = _trainable_copy(g0, p2.freeze_last_layers)
    opt = make_adam(params, p2.lr, cfg.fused_adam)
    a = ctx.anchor
    a_idx = ctx.anchor_idx
    latents = latents.detach()
    use_pd = cfg.use_pd_masks
    w_out = p2.w_out * p2.out_mask_boost if use_pd else 0.0
    pd_a0 = None
    if use_pd:
        with torch.no_grad():   # constant anchor mask from the frozen generator (official)
            full_a0 = ctx.render(g0, latents[a:a + 1])
            pd_a0 = ctx.pd_mask(full_a0, ctx.down(full_a0), a_idx)
    y_a = ctx.inputs_work[a:a + 1]
    rng = torch.Generator(device=ctx.device).manual_seed(ctx.seed + 1)
    schedule = _device_schedule(ctx.T, a, cfg.pairs_per_step, p2.epochs, ctx.seed + 1, ctx.device)
    records: list[dict[str, torch.Tensor]] = []
    for step, idx in enumerate(schedule):
        ctx.check_cancel()
        k = len(idx)
        full = ctx.render(g, torch.cat([latents[a:a + 1], latents[idx]]))
        full_a, full_i = full[:1], full[1:]
        x_a, x_i = ctx.down(full_a), ctx.down(full_i)
        f_ai, f_ia = ctx.flows(x_a, x_i)
        pd_a = pd_i = None
        if use_pd:
            pd_i = ctx.pd_mask(full_i, x_i, idx)
            pd_a = pd_a0 if p2.anchor_mask == "frozen" else ctx.pd_mask(full_a, x_a, a_idx)
        photo, eps_loss, tv = _masks_and_photo(ctx, x_a, x_i, f_ai, f_ia, pd_a, pd_i, p2.lambda_eps, p2.w_tv)
        out = photo.new_zeros(())
        if w_out:
            paper_clamp = p2.out_mask_power == 1.0
            m_i = (warp(pd_a.expand(k, -1, -1, -1), f_ai, convention=cfg.warp_convention)
                   if p2.out_mask_source == "warped_anchor" else pd_i)
            out = (out_of_mask_loss(ctx.lpips, x_i, ctx.inputs_work[idx], m_i, p2.out_mask_power, paper_clamp)
                   + out_of_mask_loss(ctx.lpips, x_a, y_a, pd_a, p2.out_mask_power, paper_clamp))
        reg = photo.new_zeros(())
        if p2.lambda_r:
            if p2.reg_center == "anchor":
                center = latents[a:a + 1].expand(p2.reg_samples, -1, -1)
            else:
                center = latents[idx[: p2.reg_samples]]
            with torch.autocast(ctx.device.type, dtype=ctx.amp_dtype or torch.bfloat16, enabled=ctx.use_amp):
                reg = local_regularizer(g, g0, center, ctx.lpips, alpha=p2.reg_alpha, l2_weight=p2.reg_l2_weight,
                                        lpips_weight=p2.reg_lpips_weight, psi=p2.reg_psi,
                                        n_samples=center.shape[0], noise_mode=p2.reg_noise_mode,
                                        generator=rng).float()
        loss = p2.w_photo * photo + p2.lambda_eps * eps_loss + w_out * out + p2.lambda_r * reg + p2.w_tv * tv
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        records.append({"loss": loss.detach(), "photo": photo.detach(), "eps": eps_loss.detach(),
                        "out": out.detach(), "reg": reg.detach()})
        if (step + 1) % cfg.progress_every == 0 or step + 1 == len(schedule):
            frac = frac0 + (frac1 - frac0) * (step + 1) / len(schedule)
            ctx.report(frac, f"phase 2: step {step + 1}/{len(schedule)}, loss {loss.item():.4f}")
    g.requires_grad_(False)
    g.eval()
    return PhaseResult(latents=latents, generator=g, history=_history(records), seconds=time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------------------------------
# public API


@torch.no_grad()
def render(generator: nn.Module, latents: torch.Tensor, batch: int = 8, noise_mode: str = "const",
           amp: Literal["none", "bf16", "fp16"] = "none") -> torch.Tensor:
    """Render W+ codes ``[T,n_latent,D]`` -> images ``[T,3,S,S]`` in [-1,1], in chunks."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    use = dtype is not None and latents.device.type == "cuda"
    outs = []
    for s in range(0, latents.shape[0], batch):
        with torch.autocast(latents.device.type, dtype=dtype or torch.bfloat16, enabled=use):
            outs.append(generator.synthesis(latents[s:s + batch], noise_mode=noise_mode).float())
    return torch.cat(outs)


def _phase_weights(cfg: ConsistencyConfig, do1: bool, do2: bool) -> tuple[float, float]:
    # Rough cost model for progress: a phase-2 step (weight gradients, regulariser) ~ 2.5 phase-1 steps.
    c1 = cfg.phase1.epochs * (1.0 if do1 else 0.0)
    c2 = cfg.phase2.epochs * (2.5 if do2 else 0.0)
    total = c1 + c2 or 1.0
    return c1 / total * 0.95, c2 / total * 0.95


def run_consistency(generator: nn.Module, w_edit: torch.Tensor, aligned_inputs: torch.Tensor,
                    flow_estimator: FlowEstimator, lpips: nn.Module, config: ConsistencyConfig | None = None,
                    mapper: nn.Module | None = None, progress: ProgressFn | None = None,
                    cancel: CancelFn | None = None) -> ConsistencyResult:
    """Phases 1 and 2 (as enabled by ``config.run_phase1/run_phase2``) and the final rendering.

    generator: tcve ``Generator`` (frozen G0; never modified). w_edit: direct-edit codes ``[T,n_latent,D]`` on the
    working device. aligned_inputs: aligned input frames ``[T,3,H,W]`` in [-1,1] (resized to the generator size).
    flow_estimator: ``FlowEstimator`` (RaftFlow for the method; gradients flow through it when ``flow_grad``).
    lpips: ``SpatialLPIPS`` (spatial map). mapper: the edit's pretrained LevelsMapper (official in-domain), or None
    for a fresh zero-residual one. progress(fraction, message); cancel() -> True raises ``tcve.errors.Cancelled``.
    """
    cfg = config or ConsistencyConfig.in_domain()
    ctx = _Ctx(generator, w_edit, aligned_inputs, flow_estimator, lpips, cfg, progress, cancel)
    w1, w2 = _phase_weights(cfg, cfg.run_phase1, cfg.run_phase2)
    history: dict[str, dict[str, list[float]]] = {}
    seconds: dict[str, float] = {}
    with _tf32(cfg.tf32), _frozen(generator), _frozen(lpips):
        lat = w_edit.detach()
        g = generator
        if cfg.run_phase1:
            ctx.report(0.0, "phase 1: refining latents")
            r1 = _run_phase1(ctx, generator, lat, mapper, 0.0, w1)
            lat, history["phase1"], seconds["phase1"] = r1.latents, r1.history, r1.seconds
        if cfg.run_phase2:
            ctx.report(w1, "phase 2: tuning the generator")
            r2 = _run_phase2(ctx, generator, lat, w1, w1 + w2)
            g, history["phase2"], seconds["phase2"] = r2.generator, r2.history, r2.seconds
        images = None
        if cfg.return_images:
            ctx.check_cancel()
            t0 = time.perf_counter()
            ctx.report(w1 + w2, "rendering frames")
            images = render(g, lat, cfg.render_batch, cfg.noise_mode, cfg.amp)
            seconds["render"] = time.perf_counter() - t0
    ctx.report(1.0, "temporal consistency done")
    return ConsistencyResult(latents=lat, generator=g, images=images, history=history, anchor=ctx.anchor,
                             seconds=seconds)


def run_phase1(generator: nn.Module, w_edit: torch.Tensor, aligned_inputs: torch.Tensor,
               flow_estimator: FlowEstimator, lpips: nn.Module, config: ConsistencyConfig | None = None,
               mapper: nn.Module | None = None, progress: ProgressFn | None = None,
               cancel: CancelFn | None = None) -> PhaseResult:
    """Phase 1 alone -> refined latents ``[T,n_latent,D]`` and the tuned mapper (generator untouched)."""
    cfg = config or ConsistencyConfig.in_domain()
    ctx = _Ctx(generator, w_edit, aligned_inputs, flow_estimator, lpips, cfg, progress, cancel)
    with _tf32(cfg.tf32), _frozen(generator), _frozen(lpips):
        return _run_phase1(ctx, generator, w_edit, mapper, 0.0, 1.0)


def run_phase2(generator: nn.Module, latents: torch.Tensor, aligned_inputs: torch.Tensor,
               flow_estimator: FlowEstimator, lpips: nn.Module, config: ConsistencyConfig | None = None,
               progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> PhaseResult:
    """Phase 2 alone on the given (e.g. phase-1) latents -> tuned generator copy."""
    cfg = config or ConsistencyConfig.in_domain()
    ctx = _Ctx(generator, latents, aligned_inputs, flow_estimator, lpips, cfg, progress, cancel)
    with _tf32(cfg.tf32), _frozen(generator), _frozen(lpips):
        return _run_phase2(ctx, generator, latents, 0.0, 1.0)


def phase1_only(generator: nn.Module, w_edit: torch.Tensor, aligned_inputs: torch.Tensor,
                flow_estimator: FlowEstimator, lpips: nn.Module, config: ConsistencyConfig | None = None,
                **kwargs) -> ConsistencyResult:
    """Ablation 'update W only' (Table 3, row 2)."""
    cfg = replace(config or ConsistencyConfig.in_domain(), run_phase1=True, run_phase2=False)
    return run_consistency(generator, w_edit, aligned_inputs, flow_estimator, lpips, cfg, **kwargs)


def phase2_only(generator: nn.Module, w_edit: torch.Tensor, aligned_inputs: torch.Tensor,
                flow_estimator: FlowEstimator, lpips: nn.Module, config: ConsistencyConfig | None = None,
                **kwargs) -> ConsistencyResult:
    """Ablation 'update G only' (Table 3, row 3): phase 2 on the direct-edit codes."""
    cfg = replace(config or ConsistencyConfig.in_domain(), run_phase1=False, run_phase2=True)
    kwargs.pop("mapper", None)
    return run_consistency(generator, w_edit, aligned_inputs, flow_estimator, lpips, cfg, **kwargs)

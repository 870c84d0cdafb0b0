"""Speed of the temporal-consistency phases (1, 2) and stitch tuning (3) with generators of the real architecture.

Random weights everywhere (real sizes: StyleGAN2 style_dim 512, n_mlp 8, channel_multiplier 2; RAFT large, 20
iterations; LPIPS-alex): only the cost matters. Seconds per step are measured as (t(n steps) - t(1 step)) / (n - 1),
after an untimed warm-up run, so set-up and warm-up (cuDNN autotune, compile) are excluded; the projection for a clip multiplies by the number of
steps the chosen config takes (epochs x ceil((T-1)/pairs_per_step), stitch: ceil(T/frames_per_copy) x steps).

Run from the repository root:

    python -m bench.consistency                       # CPU: 256 only; CUDA: 256 and 1024
    python -m bench.consistency --sizes 1024 --pairs 1 8 --amp bf16 --frames 150
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import replace

import torch

from tcve.consistency import ConsistencyConfig, run_phase1, run_phase2
from tcve.flow import RaftFlow
from tcve.losses import SpatialLPIPS
from tcve.models.stylegan2 import Generator
from tcve.stitch import StitchConfig, stitch_tune


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def per_step(make_run, n: int, device: torch.device) -> float:
    """Seconds per step: (t(n) - t(1)) / (n - 1) (n >= 2), after one untimed warm-up run; t(n)/n if noise wins."""
    make_run(1)
    t1 = _timed(lambda: make_run(1), device)
    tn = _timed(lambda: make_run(n), device)
    return (tn - t1) / (n - 1) if tn > t1 else tn / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="generator sizes (default 256 [+1024 on CUDA])")
    ap.add_argument("--pairs", type=int, nargs="+", default=[1, 8], help="pairs_per_step values")
    ap.add_argument("--steps", type=int, default=3, help="measured steps per phase (>= 2)")
    ap.add_argument("--frames", type=int, default=150, help="clip length for the projection")
    ap.add_argument("--amp", choices=["none", "bf16", "fp16"], default=None, help="default: bf16 on CUDA, none on CPU")
    ap.add_argument("--stitch-steps", type=int, default=50)
    ap.add_argument("--stitch-group", type=int, nargs="+", default=[1, 8], help="frames_per_copy values")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    sizes = args.sizes or ([256, 1024] if device.type == "cuda" else [256])
    amp = args.amp or ("bf16" if device.type == "cuda" else "none")
    n = max(2, args.steps)
    torch.manual_seed(0)
    lpips = SpatialLPIPS("alex", backbone="random").to(device)
    raft = RaftFlow("large", weights=None, iters=20).to(device)
    dev_name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"device: {dev_name}; amp={amp}; compile={args.compile}; projection for T={args.frames}")
    print(f"{'size':>5} {'stage':<8} {'batch':>5} {'s/step':>8} {'steps(T)':>9} {'min(T)':>8}")
    for size in sizes:
        g = Generator(size=size, style_dim=512, n_mlp=8, channel_multiplier=2).to(device).eval()
        base = ConsistencyConfig.in_domain(amp=amp, compile=args.compile, return_images=False,
                                           progress_every=10 ** 9)
        total = {}
        for k in args.pairs:
            cfg = replace(base, pairs_per_step=k, pd_mask_resolution="full" if k == 1 else "working")

            def run1(steps: int, cfg=cfg, k=k) -> None:
                t = 1 + k * steps
                w = torch.randn(t, g.n_latent, 512, device=device) * 0.5
                y = torch.rand(t, 3, size, size, device=device) * 2 - 1
                run_phase1(g, w, y, raft, lpips, replace(cfg, phase1=replace(cfg.phase1, epochs=1)))

            def run2(steps: int, cfg=cfg, k=k) -> None:
                t = 1 + k * steps
                w = torch.randn(t, g.n_latent, 512, device=device) * 0.5
                y = torch.rand(t, 3, size, size, device=device) * 2 - 1
                run_phase2(g, w, y, raft, lpips, replace(cfg, phase2=replace(cfg.phase2, epochs=1)))

            per_epoch = math.ceil((args.frames - 1) / k)
            for stage, fn, epochs in (("phase1", run1, cfg.phase1.epochs), ("phase2", run2, cfg.phase2.epochs)):
                s = per_step(fn, n, device)
                steps = epochs * per_epoch
                total[(stage, k)] = s * steps
                print(f"{size:>5} {stage:<8} {k:>5} {s:>8.3f} {steps:>9} {s * steps / 60:>8.2f}", flush=True)
        for k in args.stitch_group:
            scfg = StitchConfig(frames_per_copy=k, frames_per_step=1, amp=amp)   # one copy per step (bench.steps: batched)

            def run3(steps: int, scfg=scfg, k=k) -> None:
                w = torch.randn(k, g.n_latent, 512, device=device) * 0.5
                y = torch.rand(k, 3, size, size, device=device) * 2 - 1
                stitch_tune(g, w, y, replace(scfg, steps=steps))

            s = per_step(run3, n, device)
            steps = math.ceil(args.frames / k) * args.stitch_steps
            total[("stitch", k)] = s * steps
            print(f"{size:>5} {'stitch':<8} {k:>5} {s:>8.3f} {steps:>9} {s * steps / 60:>8.2f}", flush=True)
        for k in args.pairs:
            ks = max(args.stitch_group) if k > 1 else 1
            mins = (total[("phase1", k)] + total[("phase2", k)] + total[("stitch", ks)]) / 60
            print(f"{size:>5} total: pairs_per_step={k}, frames_per_copy={ks}: {mins:.2f} min for {args.frames} frames")
        del g
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()

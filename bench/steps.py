"""Per-stage cost of one optimisation step (PTI, phase 1, phase 2, stitching) for each preset, and the projection to
a whole clip. Random weights (only the cost matters); torch, torchvision and numpy only (no gradio/mediapipe/av).

Presets: ``before`` = the loops as they were before issue 12 (torch's default Adam, one stitch copy at a time;
the same maths), ``official`` = the official settings with the sync-free loops (fused Adam, 8 stitch copies per
step), ``fast`` = the fast presets (PTI 50 passes x 4 frames, 8 pairs per consistency step with masks at the
working resolution, bf16 autocast on CUDA).

Per stage and preset it prints s/step ((t(1+n) - t(1)) / n after a warm-up run; wall time on CUDA, process CPU
time on the CPU), leaf aten ops per step (the
launch count on the CPU side), CUDA kernels per step, host reads per step and CUDA synchronisations per step (both
from ``torch.profiler``), FLOP per step (``torch.utils.flop_counter``), achieved TFLOP/s, on CUDA also the peak
memory and the fraction of a measured bf16 matmul rate, and the projected time for ``--frames`` frames:
PTI passes x ceil(T / batch), phase 1 epochs x ceil((T-1)/pairs), phase 2 likewise, stitching steps x ceil(T / copies).

    python -m bench.steps                                   # CPU: tiny 64 px generator, RAFT-small (2 updates)
    python -m bench.steps --arch ffhq --size 1024 --raft large --raft-iters 20 --device cuda   # the H200 run
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import replace

import torch

from tcve.consistency import ConsistencyConfig, run_phase1, run_phase2
from tcve.flow import RaftFlow
from tcve.invert import PTIConfig, run_pti
from tcve.losses import SpatialLPIPS
from tcve.models.stylegan2 import Generator
from tcve.steps import count_ops
from tcve.stitch import StitchConfig, stitch_tune

ARCHS = {
    "tiny": dict(style_dim=64, n_mlp=2, channel_multiplier=1, channel_max=64),
    "ffhq": dict(style_dim=512, n_mlp=8, channel_multiplier=2),
}
STAGES = ("pti", "phase1", "phase2", "stitch")


def presets(amp: str) -> dict[str, tuple[PTIConfig, ConsistencyConfig, StitchConfig]]:
    base = ConsistencyConfig.in_domain(return_images=False, progress_every=10 ** 9)
    return {
        "before": (PTIConfig(fused_adam=False, progress_every=10 ** 9), replace(base, fused_adam=False),
                   StitchConfig(frames_per_step=1, fused_adam=False)),
        "official": (PTIConfig(progress_every=10 ** 9), base, StitchConfig()),
        "fast": (PTIConfig.fast(progress_every=10 ** 9), replace(base.fast(), amp=amp), StitchConfig(amp=amp)),
    }


def clip_steps(stage: str, cfgs: tuple[PTIConfig, ConsistencyConfig, StitchConfig], frames: int) -> int:
    pti, cons, st = cfgs
    if stage == "pti":
        return pti.steps * math.ceil(frames / pti.batch_size)
    if stage == "phase1":
        return cons.phase1.epochs * math.ceil((frames - 1) / cons.pairs_per_step)
    if stage == "phase2":
        return cons.phase2.epochs * math.ceil((frames - 1) / cons.pairs_per_step)
    return st.steps * math.ceil(frames / (st.frames_per_step * st.frames_per_copy))


def runner(stage: str, cfgs, g, raft, lpips, device) -> Callable[[int], object]:
    """steps -> a run of exactly that many optimisation steps of the stage (one step per pass / epoch)."""
    pti, cons, st = cfgs
    dim, size = g.style_dim, g.size

    def data(t: int) -> tuple[torch.Tensor, torch.Tensor]:
        gen = torch.Generator().manual_seed(0)
        w = (torch.randn(t, g.n_latent, dim, generator=gen) * 0.5).to(device)
        y = (torch.rand(t, 3, size, size, generator=gen) * 2 - 1).to(device)
        return w, y

    if stage == "pti":
        w, y = data(pti.batch_size)
        return lambda n: run_pti(g, y, w, lpips, replace(pti, steps=n))
    if stage in ("phase1", "phase2"):
        w, y = data(1 + cons.pairs_per_step)
        fn = run_phase1 if stage == "phase1" else run_phase2
        return lambda n: fn(g, w, y, raft, lpips, replace(cons, phase1=replace(cons.phase1, epochs=n),
                                                          phase2=replace(cons.phase2, epochs=n)))
    w, y = data(st.frames_per_step * st.frames_per_copy)
    return lambda n: stitch_tune(g, w, y, replace(st, steps=n))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds(fn: Callable[[], object], device: torch.device) -> float:
    """Wall time on CUDA; on the CPU this process's CPU time (use --threads 1), which a shared machine's other
    jobs do not inflate."""
    clock = time.perf_counter if device.type == "cuda" else time.process_time
    sync(device)
    t0 = clock()
    fn()
    sync(device)
    return clock() - t0


def flops(fn: Callable[[], object]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def matmul_tflops(device: torch.device) -> float | None:
    """Measured dense bf16 matmul rate (8192^3) on CUDA; None on the CPU."""
    if device.type != "cuda":
        return None
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    reps = 20
    t = seconds(lambda: [a @ b for _ in range(reps)], device)
    return 2 * 8192 ** 3 * reps / t / 1e12


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=list(ARCHS), default="tiny")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--raft", choices=["small", "large"], default="small")
    ap.add_argument("--raft-iters", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=2, help="measured steps per stage (after one warm-up step)")
    ap.add_argument("--frames", type=int, default=150, help="clip length for the projection")
    ap.add_argument("--presets", nargs="+", default=["before", "official", "fast"])
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    ap.add_argument("--flops", action=argparse.BooleanOptionalAction, default=None,
                    help="count FLOP per step (default: on CUDA only; costs two more runs per stage)")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    g = Generator(size=args.size, **ARCHS[args.arch]).to(device).eval().requires_grad_(False)
    lpips = SpatialLPIPS("alex", backbone="random").to(device)
    raft = RaftFlow(args.raft, weights=None, iters=args.raft_iters).to(device)
    amp = "bf16" if device.type == "cuda" else "none"
    want_flops = device.type == "cuda" if args.flops is None else args.flops
    peak = matmul_tflops(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}, torch {torch.__version__}, {torch.get_num_threads()} threads; generator {args.arch} "
          f"{args.size}px; RAFT-{args.raft} x{args.raft_iters}; fast amp={amp}; projection for {args.frames} frames"
          + (f"; bf16 matmul {peak:.0f} TFLOP/s" if peak else ""))
    cols = "| stage | preset | s/step | ops/step | kernels/step | host reads/step | CUDA syncs/step | GFLOP/step " \
           "| TFLOP/s | % matmul | peak GiB | steps | projected min |"
    print(cols)
    print("|---|---|" + "---:|" * (cols.count("|") - 3))
    table = presets(amp)
    totals: dict[str, float] = {}
    for stage in args.stages:
        for preset in args.presets:
            cfgs = table[preset]
            run = runner(stage, cfgs, g, raft, lpips, device)
            run(1)   # warm-up: allocations, cuDNN autotuning
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            n = max(1, args.steps)
            per_step = (seconds(lambda: run(1 + n), device) - seconds(lambda: run(1), device)) / n
            counts = (count_ops(lambda: run(1 + n)) - count_ops(lambda: run(1))).per(n)
            fl = (flops(lambda: run(1 + n)) - flops(lambda: run(1))) / n if want_flops else float("nan")
            peak_gib = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else float("nan")
            steps = clip_steps(stage, cfgs, args.frames)
            minutes = per_step * steps / 60
            totals[preset] = totals.get(preset, 0.0) + minutes
            tflops = fl / per_step / 1e12 if per_step > 0 else float("nan")
            frac = f"{100 * tflops / peak:.1f}" if peak else "-"
            print(f"| {stage} | {preset} | {per_step:.4f} | {counts['ops']:.0f} | {counts['kernels']:.0f} | "
                  f"{counts['syncs']:.0f} | {counts['cuda_syncs']:.0f} | {fl / 1e9:.2f} | {tflops:.3f} | {frac} | "
                  f"{peak_gib:.1f} | {steps} | {minutes:.2f} |", flush=True)
    for preset, minutes in totals.items():
        print(f"total {preset}: {minutes:.2f} min for {args.frames} frames ({', '.join(args.stages)})")


if __name__ == "__main__":
    main()

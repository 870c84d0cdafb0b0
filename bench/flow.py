"""Milliseconds per call of the flow / loss / metric building blocks (random weights: timings do not depend on them).

    python -m bench.flow [--size 256] [--iters 20] [--repeats 3] [--threads 1] [--devices cpu,cuda]

Rows: RAFT small/large forward (no grad) and forward+backward w.r.t. both images (as in the consistency stage),
OpenCV DIS presets, spatial LPIPS alex/vgg forward (+backward), E_warp of a T-frame clip from given flows.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from tcve.flow import DisFlow, RaftFlow, fb_consistency_error, warp
from tcve.losses import SpatialLPIPS
from tcve.metrics import warping_error_from_flows


def _timed(fn: Callable[[], object], device: str, repeats: int) -> float:
    fn()  # warm-up (allocations, cudnn autotune)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--frames", type=int, default=16, help="clip length for the warping-error row")
    ap.add_argument("--devices", default="cpu,cuda")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    devices = [d for d in args.devices.split(",") if d == "cpu" or (d == "cuda" and torch.cuda.is_available())]
    s = args.size
    rows: list[tuple[str, str, float]] = []
    for device in devices:
        a = torch.rand(1, 3, s, s, device=device) * 2 - 1
        b = torch.rand(1, 3, s, s, device=device) * 2 - 1
        for size in ("small", "large"):
            raft = RaftFlow(size, iters=args.iters).to(device)
            with torch.no_grad():
                rows.append((f"RAFT-{size} {s}² {args.iters} it, fwd", device, _timed(lambda: raft(a, b), device, args.repeats)))

            def fwd_bwd() -> None:
                x, y = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
                raft(x, y).abs().mean().backward()

            rows.append((f"RAFT-{size} {s}² {args.iters} it, fwd+bwd", device, _timed(fwd_bwd, device, args.repeats)))
        if device == "cpu":
            for preset in ("ultrafast", "fast", "medium"):
                dis = DisFlow(preset)
                rows.append((f"DIS-{preset} {s}²", device, _timed(lambda: dis(a, b), device, args.repeats)))
        for net in ("alex", "vgg"):
            lp = SpatialLPIPS(net, backbone="random").to(device)
            with torch.no_grad():
                rows.append((f"LPIPS-{net} spatial {s}², fwd", device, _timed(lambda: lp(a, b), device, args.repeats)))

            def lp_bwd() -> None:
                x = a.clone().requires_grad_(True)
                lp(x, b).mean().backward()

            rows.append((f"LPIPS-{net} spatial {s}², fwd+bwd", device, _timed(lp_bwd, device, args.repeats)))
        flow = torch.randn(1, 2, s, s, device=device) * 3
        rows.append((f"warp + fb error {s}²", device,
                     _timed(lambda: fb_consistency_error(flow, warp(flow, flow)), device, args.repeats)))
        t = args.frames
        video = torch.rand(t, 3, s, s, device=device) * 2 - 1
        flows = torch.randn(t - 1, 2, s, s, device=device)
        rows.append((f"E_warp {t} frames {s}² (flows given)", device,
                     _timed(lambda: warping_error_from_flows(video, flows, -flows), device, args.repeats)))
    width = max(len(r[0]) for r in rows)
    print(f"{'operation':<{width}}  {'device':<6}  {'ms/call':>9}")
    for name, device, ms in rows:
        print(f"{name:<{width}}  {device:<6}  {ms:9.1f}")
    print(f"(threads={args.threads}, repeats={args.repeats}, torch {torch.__version__})")


if __name__ == "__main__":
    main()

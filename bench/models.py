"""Milliseconds per frame of the networks: StyleGAN2 synthesis (forward, forward+backward) and the e4e encoder.

Run from the repository root: ``python -m bench.models [--sizes 256 1024] [--batches 1 4] [--repeats 3]``.
Random weights of the real architectures (config-f generator, IR-SE50 e4e); prints one Markdown table per device.
"""

from __future__ import annotations

import argparse
import time

import torch

from tcve.models.encoders import PSPEncoder, StyleEncoder
from tcve.models.stylegan2 import Generator


def _time(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up (allocations, cuDNN autotune)
    if device.type == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def bench_generator(size: int, batch: int, device: torch.device, repeats: int) -> tuple[float, float]:
    g = Generator(size).to(device)
    w = torch.randn(batch, g.n_latent, g.style_dim, device=device)

    def forward() -> None:
        with torch.no_grad():
            g.synthesis(w)

    def forward_backward() -> None:
        w_req = w.clone().requires_grad_(True)
        g.zero_grad(set_to_none=True)
        g.synthesis(w_req).square().mean().backward()

    per_frame = 1000.0 / batch
    return _time(forward, repeats, device) * per_frame, _time(forward_backward, repeats, device) * per_frame


def bench_encoder(batch: int, device: torch.device, repeats: int) -> float:
    body = StyleEncoder(n_styles=18, progressive=True)
    encoder = PSPEncoder(body, torch.zeros(18, 512), True, "Encoder4Editing").to(device).eval()
    image = torch.rand(batch, 3, 256, 256, device=device) * 2 - 1

    def forward() -> None:
        with torch.no_grad():
            encoder(image)

    return _time(forward, repeats, device) * 1000.0 / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
        print(f"\n### {name} (torch {torch.__version__})\n")
        print("| network | batch | forward ms/frame | forward+backward ms/frame |")
        print("|---|---|---|---|")
        for size in args.sizes:
            for batch in args.batches:
                fwd, fwd_bwd = bench_generator(size, batch, device, args.repeats)
                print(f"| StyleGAN2 {size}² config-f | {batch} | {fwd:.1f} | {fwd_bwd:.1f} |", flush=True)
        for batch in args.batches:
            print(f"| e4e (IR-SE50) 256² | {batch} | {bench_encoder(batch, device, args.repeats):.1f} | – |", flush=True)


if __name__ == "__main__":
    main()

"""How much the photometric term (Eq. 1) changes between the official warp and the aligned one.

Renders seeded demo-domain talking-head clips (``tcve.demo.faces.animate_clip``: head motion, mouth, blinks) at
each working resolution, pairs the middle (anchor) frame with every other frame as the consistency stage does, takes
DIS flows of both directions, visibility masks exp(-5 eps), and evaluates the photometric loss with
``warp_convention='official'`` and ``'aligned'`` (random-backbone LPIPS on [0,255], the offline LPIPS; no pretrained
weights exist here). Prints the relative difference (official - aligned) / aligned per resolution.

    python -m bench.warp_conventions                  # clips of seeds 0-2, 16 frames, 64 and 128 px
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from tcve.consistency import anchor_index
from tcve.demo.classifier import frames_to_image
from tcve.demo.faces import animate_clip
from tcve.flow import DisFlow, fb_consistency_error, visibility_mask
from tcve.losses import SpatialLPIPS, photometric_loss


def relative_differences(size: int, seed: int, frames: int, lpips: SpatialLPIPS) -> list[float]:
    clip, _ = animate_clip(frames, 25.0, size, np.random.default_rng(seed))
    images = frames_to_image(clip)
    a = anchor_index(frames)
    flow = DisFlow("medium")
    out = []
    for i in range(frames):
        if i == a:
            continue
        x_a, x_i = images[a:a + 1], images[i:i + 1]
        f_ai, f_ia = flow(x_a, x_i), flow(x_i, x_a)
        m_i = visibility_mask(fb_consistency_error(f_ia, f_ai), 5.0)
        m_a = visibility_mask(fb_consistency_error(f_ai, f_ia), 5.0)
        with torch.no_grad():
            official = photometric_loss(lpips, x_a, x_i, f_ai, f_ia, m_a, m_i, warp_convention="official").item()
            aligned = photometric_loss(lpips, x_a, x_i, f_ai, f_ia, m_a, m_i, warp_convention="aligned").item()
        out.append((official - aligned) / aligned)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lpips = SpatialLPIPS("alex", backbone="random")
    print("| working size | pairs | mean rel. diff | min | max |")
    print("|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        diffs = np.array([d for seed in args.seeds for d in relative_differences(size, seed, args.frames, lpips)])
        print(f"| {size} | {len(diffs)} | {diffs.mean():+.2%} | {diffs.min():+.2%} | {diffs.max():+.2%} |")


if __name__ == "__main__":
    main()

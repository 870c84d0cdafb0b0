"""How far phase 1 moves the codes and lowers its loss when it starts from a fresh (zero-residual) mapper.

A direction edit on the demo pack: a seeded demo talking-head clip (``tcve.demo.faces.animate_clip``), inverted by
the demo e4e, edited with the demo 'smile' direction at the catalogue's strength 3 (all W+ rows), then phase 1 at
the official in-domain settings (lr 1e-3, alpha 0.04, lambda_rf 0.2, one pair per step, scale factor 4 -> 32 px
floor, PD masks on) with OpenCV DIS flow and a random-backbone LPIPS (the offline networks of the demo model set).
Rows: the old fresh-mapper path (StyleCLIP's lr_mul 0.01 at lr 1e-3, L_rf on the mapper output) and the new
defaults (lr_mul 1, lr 0.05, L_rf on the applied residual). Printed: mean |W^ - W| over all code entries (and the
clip's mean frame-to-frame code change for scale), the loss of the first and the last epoch (means over their
steps) and E_warp of the rendered codes (flows of the input clip).

    python -m bench.phase1_fresh_mapper               # 9 frames, 10 epochs, seed 0
    python -m bench.phase1_fresh_mapper --fresh-lrs 0.005 0.01   # and other fresh-mapper lrs
    python -m bench.phase1_fresh_mapper --domain out --epochs 5 --fresh-lrs 0.05 0.5   # the sketch style

``--domain out``: the demo 'sketch' style generator renders the unedited codes (W_edit = W_inv, as the paper's
out-of-domain path), phase 1 at ``ConsistencyConfig.out_of_domain()`` (lr 0.005, alpha 0.04, lambda_rf 0.1, no PD
masks); the first row is those defaults.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from tcve.consistency import ConsistencyConfig, Phase1Config, render, run_phase1
from tcve.demo.classifier import frames_to_image
from tcve.demo.faces import animate_clip
from tcve.demo.models import demo_edit_loaders, load_demo_networks
from tcve.flow import DisFlow
from tcve.losses import SpatialLPIPS
from tcve.metrics import warping_error

VARIANTS = {
    "old: lr_mul 0.01, lr 1e-3, L_rf on M": dict(fresh_mapper_lr_mul=0.01, fresh_mapper_lr=None,
                                                fresh_mapper_rf="output"),
    "new defaults: lr_mul 1, lr 0.05, L_rf on alpha*M": {},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--domain", choices=("in", "out"), default="in")
    parser.add_argument("--fresh-lrs", type=float, nargs="*", default=[],
                        help="also run the new parameterisation at these fresh_mapper_lr values")
    args = parser.parse_args()
    variants = dict(VARIANTS) if args.domain == "in" else {"out-of-domain defaults: lr 0.005, L_rf on alpha*M": {}}
    variants.update({f"lr_mul 1, lr {lr:g}, L_rf on alpha*M": dict(fresh_mapper_lr=lr) for lr in args.fresh_lrs})
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    nets = load_demo_networks()
    frames, _ = animate_clip(args.frames, 25.0, 64, np.random.default_rng(args.seed))
    inputs = frames_to_image(frames)
    with torch.no_grad():
        w = nets.encoder(inputs)
    loaders = demo_edit_loaders()
    if args.domain == "in":
        generator, w_edit = nets.generator, w + 3.0 * loaders.direction("interfacegan-smiling").view(1, 1, -1)
    else:
        generator, w_edit = loaders.generator("nada-sketch"), w
    lpips = SpatialLPIPS("alex", backbone="random")
    flow = DisFlow("medium")
    jitter = float((w_edit[1:] - w_edit[:-1]).abs().mean())
    direct = warping_error(render(generator, w_edit), inputs, flow).mean
    print(f"clip: {args.frames} frames, mean |W_t+1 - W_t| = {jitter:.3e}, direct-edit E_warp = {direct:.3e}\n")
    print("| fresh mapper | mean abs(W^ - W) | max | loss epoch 1 | loss last epoch | change | E_warp | s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    steps = args.frames - 1
    for label, options in variants.items():
        if args.domain == "in":
            cfg = ConsistencyConfig.in_domain(progress_every=1000,
                                              phase1=Phase1Config(epochs=args.epochs, alpha=0.04, **options))
        else:
            base = ConsistencyConfig.out_of_domain(progress_every=1000)
            cfg = replace(base, phase1=replace(base.phase1, epochs=args.epochs, **options))
        start = time.perf_counter()
        res = run_phase1(generator, w_edit, inputs, flow, lpips, cfg)
        seconds = time.perf_counter() - start
        loss = np.array(res.history["loss"])
        first, last = loss[:steps].mean(), loss[-steps:].mean()
        moved = (res.latents - w_edit).abs()
        ewarp = warping_error(render(generator, res.latents), inputs, flow).mean
        print(f"| {label} | {moved.mean():.2e} | {moved.max():.2e} | {first:.4f} | {last:.4f} | "
              f"{last / first - 1:+.1%} | {ewarp:.3e} | {seconds:.0f} |")


if __name__ == "__main__":
    main()

"""Reconstruction quality of the fast PTI preset against the official setting, on the demo clips (demo model set).

Each clip is read, tracked and aligned as the app does it, inverted by the demo e4e encoder (the pivots), and then
tuned by PTI with each setting on its first ``--frames`` frames. LPIPS (the model set's LPIPS-alex, spatial mean) and
PSNR of G(pivots) against the aligned crops, at the generator's resolution; "encoder only" is the untuned generator.

    python -m bench.pti_quality                                   # both demo clips, 8 frames, official + fast
    python -m bench.pti_quality --frames 16 --out-dir bench/results/pti
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch

from tcve.edit import EditSpec
from tcve.invert import InversionConfig, PTIConfig, reconstruction_metrics, run_pti
from tcve.pipeline import PipelineConfig, prepare_clip
from tcve.service import Service

ROOT = Path(__file__).resolve().parents[1]
PRESETS = {"official": PTIConfig(), "fast": PTIConfig.fast()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", nargs="+", default=[str(ROOT / "examples" / f"demo_face_{c}.mp4") for c in "ab"])
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out-dir", default=None, help="write results.md and command.txt here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    service = Service("demo", device="cpu")
    models = service.models()
    config = PipelineConfig(inversion=replace(InversionConfig(), pti=None), run_consistency=False, stitch=None,
                            smoothing=None)
    header = ("| clip | setting | passes x frames/step | lr | optimiser steps | s | LPIPS | PSNR (dB) |\n"
              "|---|---|---|---:|---:|---:|---:|---:|")
    rows = [header]
    print(header, flush=True)
    for clip in args.clips:
        prepared = prepare_clip(clip, EditSpec("smile"), models, config)
        inputs = prepared.inputs[: args.frames]
        pivots = prepared.inversion.w_plus[: args.frames]
        g0 = prepared.inversion.generator
        name = Path(clip).stem
        m = reconstruction_metrics(g0, pivots, inputs, models.lpips)
        rows.append(f"| {name} | encoder only | - | - | 0 | 0 | {m.lpips:.4f} | {m.psnr:.2f} |")
        print(rows[-1], flush=True)
        for preset in args.presets:
            cfg = PRESETS[preset]
            torch.manual_seed(0)
            t0 = time.perf_counter()
            tuned, _ = run_pti(g0, inputs, pivots, models.lpips, cfg)
            seconds = time.perf_counter() - t0
            m = reconstruction_metrics(tuned, pivots, inputs, models.lpips)
            steps = cfg.steps * -(-len(inputs) // cfg.batch_size)
            rows.append(f"| {name} | {preset} | {cfg.steps} x {cfg.batch_size} | {cfg.lr:g} | {steps} | "
                        f"{seconds:.0f} | {m.lpips:.4f} | {m.psnr:.2f} |")
            print(rows[-1], flush=True)
    if args.out_dir:
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.md").write_text("\n".join(rows) + "\n")
        (out / "command.txt").write_text("python -m bench.pti_quality " + " ".join(
            f"--{k.replace('_', '-')} {' '.join(v) if isinstance(v, list) else v}"
            for k, v in vars(args).items() if v is not None and k != "clips") + "\n")


if __name__ == "__main__":
    main()

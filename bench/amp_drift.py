"""Drift of bf16 autocast (and channels_last) against fp32, per network and end to end, on a demo clip (CPU).

Per network, on the aligned crops of ``examples/demo_face_a.mp4`` and their direct edit (demo model set):
relative L2 error ``||x_bf16 - x_fp32|| / ||x_fp32||`` of the generator's images (trained demo generator), of
RAFT-large flows (random weights: no pretrained RAFT is reachable here) with their mean end-point error in pixels,
and of the spatial LPIPS map (random AlexNet backbone, as the offline model sets use). End to end: phases 1 + 2 run
once in fp32 and once entirely under ``torch.autocast('cpu', bfloat16)`` (generator, flow losses, LPIPS); printed
are the relative error of the output frames and the change in E_warp (flows of the input, DIS) and LPIPS to the
direct edit.

    python -m bench.amp_drift --frames 8 --out-dir bench/results/amp
"""

from __future__ import annotations

import argparse
import contextlib
from dataclasses import replace
from pathlib import Path

import torch

from tcve.consistency import ConsistencyConfig, Phase1Config, Phase2Config, run_consistency
from tcve.edit import EditSpec
from tcve.flow import RaftFlow
from tcve.invert import InversionConfig
from tcve.metrics import lpips_fidelity, warping_error
from tcve.pipeline import PipelineConfig, prepare_clip
from tcve.service import Service

ROOT = Path(__file__).resolve().parents[1]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12))


def bf16() -> contextlib.AbstractContextManager:
    return torch.autocast("cpu", dtype=torch.bfloat16)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clip", default=str(ROOT / "examples" / "demo_face_a.mp4"))
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--edit", default="eyeglasses")
    ap.add_argument("--phase1-epochs", type=int, default=1)
    ap.add_argument("--phase2-epochs", type=int, default=1)
    ap.add_argument("--flow-pairs", type=int, default=2, help="consecutive pairs for the RAFT comparison")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out-dir", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    models = Service("demo", device="cpu").models()
    config = PipelineConfig(inversion=replace(InversionConfig(), pti=None), run_consistency=False, stitch=None,
                            smoothing=None)
    prepared = prepare_clip(args.clip, EditSpec(args.edit), models, config)
    t = args.frames
    inputs, w_edit = prepared.inputs[:t], prepared.edit.w_plus[:t]
    g = prepared.edit.generator
    rows = ["| stage | what | fp32 | bf16 | relative error |", "|---|---|---:|---:|---:|"]

    with torch.no_grad():
        x32 = g.synthesis(w_edit)
        with bf16():
            x16 = g.synthesis(w_edit).float()
    rows.append(f"| generator | images of the direct edit ({t} frames, {g.size} px) | - | - | {rel(x16, x32):.2e} |")

    torch.manual_seed(0)
    raft = RaftFlow("large", weights=None, iters=20)
    a, b = inputs[:args.flow_pairs], inputs[1:args.flow_pairs + 1]
    with torch.no_grad():
        f32 = raft(a, b)
        with bf16():
            f16 = raft(a, b).float()
        raft_cl = raft.to(memory_format=torch.channels_last)
        with bf16():
            f16cl = raft_cl(a.contiguous(memory_format=torch.channels_last),
                            b.contiguous(memory_format=torch.channels_last)).float()
    epe = float((f16 - f32).norm(dim=1).mean())
    rows.append(f"| RAFT-large (random weights) | flow ({args.flow_pairs} pairs, 20 updates), mean EPE {epe:.3f} px | - | - | {rel(f16, f32):.2e} |")
    rows.append(f"| RAFT-large, channels_last | flow | - | - | {rel(f16cl, f32):.2e} |")

    lpips = models.lpips
    with torch.no_grad():
        l32 = lpips(x32, inputs)
        with bf16():
            l16 = lpips(x32, inputs).float()
    rows.append(f"| LPIPS-alex (random backbone) | spatial map, edit vs input | {float(l32.mean()):.4f} | "
                f"{float(l16.mean()):.4f} | {rel(l16, l32):.2e} |")

    cfg = ConsistencyConfig.in_domain(args.edit, phase1=Phase1Config(epochs=args.phase1_epochs),
                                      phase2=Phase2Config(epochs=args.phase2_epochs))
    mapper = None
    with contextlib.suppress(Exception):
        mapper = models.edit_loaders.mapper(f"mapper-{args.edit}")
    out32 = run_consistency(g, w_edit, inputs, models.flow, lpips, cfg, mapper=mapper)
    with bf16():
        out16 = run_consistency(g, w_edit, inputs, models.flow, lpips, cfg, mapper=mapper)
    direct = x32
    scorer = models.metric_lpips or lpips
    e32, e16 = (float(warping_error(o.images, inputs, models.flow).mean) for o in (out32, out16))
    d32, d16 = (float(lpips_fidelity(o.images, direct, scorer).mean) for o in (out32, out16))
    rows.append(f"| phases 1 + 2 ({args.phase1_epochs} + {args.phase2_epochs} epochs) | output frames | - | - | "
                f"{rel(out16.images, out32.images):.2e} |")
    rows.append(f"| phases 1 + 2 | E_warp of the result | {e32:.4e} | {e16:.4e} | {abs(e16 - e32) / e32:.2e} |")
    rows.append(f"| phases 1 + 2 | LPIPS to the direct edit | {d32:.4f} | {d16:.4f} | "
                f"{abs(d16 - d32) / max(d32, 1e-12):.2e} |")
    print("\n".join(rows))
    if args.out_dir:
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.md").write_text("\n".join(rows) + "\n")
        (out / "command.txt").write_text(
            f"python -m bench.amp_drift --frames {t} --edit {args.edit} --phase1-epochs {args.phase1_epochs} "
            f"--phase2-epochs {args.phase2_epochs} --flow-pairs {args.flow_pairs}" + (f" --threads {args.threads}" if args.threads else "") + "\n")


if __name__ == "__main__":
    main()

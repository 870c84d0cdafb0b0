"""Time inversion (encoder, PTI) and direct edits per frame, with random weights of the real architectures.

    python -m bench.invert_edit                       # CPU: tiny 64 px generator, real e4e encoder
    python -m bench.invert_edit --preset ffhq256      # CPU: the real architecture at 256 px
    python -m bench.invert_edit --device cuda --preset ffhq1024

Prints one table: per-frame seconds for e4e encoding, one PTI step (official batch 1, with the locality
regulariser), the official PTI budget extrapolated per frame (200 passes), rendering, mapper / direction / NADA
edits, and the free-text edits (seconds per optimisation step and for the default step counts). Weights are random:
the numbers are speed only. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import torch

from tcve.edit import (
    NadaTrainConfig,
    TextEditConfig,
    blend_generators,
    direction_edit,
    mapper_edit,
    optimise_text_residual,
    train_nada,
)
from tcve.invert import EncoderInversionConfig, PTIConfig, encode_frames, render, run_pti
from tcve.losses import SpatialLPIPS
from tcve.models import Generator
from tcve.models.encoders import PSPEncoder, StyleEncoder
from tcve.models.mapper import LevelsMapper
from tcve.text import OpenClipEmbedder, TinyEmbedder

PRESETS = {
    "tiny": dict(size=64, style_dim=64, n_mlp=2, channel_multiplier=1, channel_max=64),
    "ffhq256": dict(size=256, style_dim=512, n_mlp=8, channel_multiplier=2),
    "ffhq1024": dict(size=1024, style_dim=512, n_mlp=8, channel_multiplier=2),
}


def timed(fn: Callable[[], object], device: torch.device, repeat: int = 1) -> float:
    fn()  # warm-up (allocations, cuDNN autotuning)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeat


def real_clip(device: torch.device) -> OpenClipEmbedder:
    import open_clip

    model = open_clip.create_model("ViT-B-32", pretrained=None, force_quick_gelu=True)
    return OpenClipEmbedder(model, open_clip.get_tokenizer("ViT-B-32"), 224).to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="generator size (default: tiny on CPU, ffhq1024 on CUDA)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="optimisation steps timed per loop")
    parser.add_argument("--no-encoder", action="store_true", help="skip the IR-SE50 e4e encoder")
    parser.add_argument("--real-clip", action="store_true", help="ViT-B-32 architecture (default on CUDA)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    preset = args.preset or ("ffhq1024" if device.type == "cuda" else "tiny")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    g = Generator(**PRESETS[preset]).to(device).eval().requires_grad_(False)
    with torch.no_grad():
        g.latent_avg.copy_(g.mean_latent(512).to(device))
    t, d, n = args.frames, g.style_dim, g.n_latent
    images = (torch.rand(t, 3, g.size, g.size, device=device) * 2 - 1)
    w = g.mapping(torch.randn(t, d, device=device))[:, None].expand(-1, n, -1).contiguous()
    lpips = SpatialLPIPS(backbone="random").to(device)
    rows: list[tuple[str, float, str]] = []

    if not args.no_encoder:
        # the FFHQ e4e (18 rows of 512) whatever the generator preset: it always sees 256 px crops
        enc = PSPEncoder(StyleEncoder(18, 3, fpn=True, progressive=True), torch.zeros(18, 512), True,
                         "Encoder4Editing").to(device).eval()
        cfg = EncoderInversionConfig(batch_size=args.frames)
        s = timed(lambda: encode_frames(enc, images, cfg), device)
        rows.append(("e4e encode (IR-SE50 at 256 px, batch %d)" % t, s / t, "s/frame"))

    pti_cfg = PTIConfig(steps=1)
    one = images[:1], w[:1]
    s_step = timed(lambda: run_pti(g, one[0], one[1], lpips, dataclasses_replace(pti_cfg, steps=args.steps)),
                   device) / args.steps
    rows.append(("PTI step (batch 1, + locality reg.)", s_step, "s/step"))
    rows.append(("PTI official budget (200 passes)", 200 * s_step, "s/frame"))
    s_step_b = timed(lambda: run_pti(g, images[:4], w[:4], lpips, PTIConfig(steps=args.steps, batch_size=4)),
                     device) / args.steps
    rows.append(("PTI step (batch 4 frames)", s_step_b / 4, "s/frame/pass"))
    rows.append(("render (batch 4)", timed(lambda: render(g, w, 4), device) / t, "s/frame"))

    mapper = LevelsMapper(no_fine=True, n_latent=n, style_dim=d).to(device).eval()
    rows.append(("mapper edit (codes only)", timed(lambda: mapper_edit(w, mapper, 0.1, ("coarse", "medium")),
                                                   device) / t, "s/frame"))
    direction = torch.randn(d, device=device)
    rows.append(("direction edit (codes only)", timed(lambda: direction_edit(w, direction, 3.0), device) / t,
                 "s/frame"))
    styled = copy.deepcopy(g)
    rows.append(("NADA blend (strength 0.5)", timed(lambda: blend_generators(g, styled, 0.5), device), "s/clip"))

    clip = real_clip(device) if (args.real_clip or device.type == "cuda") else TinyEmbedder().to(device)
    tcfg = TextEditConfig(steps=args.steps)
    s_text = timed(lambda: optimise_text_residual(g, w, clip, "a face with a beard", tcfg), device) / args.steps
    rows.append(("free text in-domain: step (4 frames)", s_text, "s/step"))
    rows.append((f"free text in-domain: {TextEditConfig().steps} steps", TextEditConfig().steps * s_text, "s/clip"))
    ncfg = NadaTrainConfig(steps=args.steps, auto_layer_k=min(NadaTrainConfig().auto_layer_k, n - 1))
    s_nada = timed(lambda: train_nada(g, clip, "photo", "sketch", ncfg), device) / args.steps
    rows.append(("free text NADA: step (+ layer choice)", s_nada, "s/step"))
    rows.append((f"free text NADA: {NadaTrainConfig().steps} steps", NadaTrainConfig().steps * s_nada, "s/clip"))

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU x{torch.get_num_threads()} threads"
    print(f"\ninversion + edit timings: preset {preset} ({g.size} px, style_dim {d}), {t} frames, {name}, "
          f"random weights, clip={'ViT-B-32' if isinstance(clip, OpenClipEmbedder) else 'tiny'}")
    print(f"{'what':44s} {'seconds':>10s}  unit")
    for what, sec, unit in rows:
        print(f"{what:44s} {sec:10.4f}  {unit}")


def dataclasses_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


if __name__ == "__main__":
    main()

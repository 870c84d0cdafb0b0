"""The rehearsal from aligned crops onward, with torch, torchvision, numpy, scipy, safetensors and huggingface_hub only.

    python -m bench.rehearsal --from-crops --frames 150 --preset paper     # the GPU run (both presets: run twice)
    python -m bench.rehearsal_crops --frames 2 --steps 1 --edits mapper    # a CPU smoke run

For a GPU machine without gradio, mediapipe, av, lpips or open_clip: synthesises a moving 1024 px "face" clip as
aligned crops (no video decoding, no landmarks), builds the rehearsal cache (no CLIP: the free-text edits need
open_clip and are skipped) and runs e4e + PTI, the direct edit, phases 1-2 and phase 3 (in-domain) with
``tcve.lpips_torch.TorchLPIPS`` as LPIPS (random linear heads written next to the cache). It never imports
``tcve.pipeline`` / ``tcve.service`` (they import av and OpenCV). Presets: ``paper`` = the official settings
(``PipelineConfig()``: PTI 200 passes, consistency defaults, stitching 50 steps), ``preview`` = the app's Preview
preset (PTI 2 passes, batch 4, 1 + 1 epochs, 4 pairs per step, stitching 5 steps). ``--steps N`` replaces every
stage's steps / epochs by N.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from bench.rehearsal import DEFAULT_ROOT, EDIT_KINDS, Row, StageMeter, _gib, print_table

TORCH_ONLY_NAMES = ("stylegan2-ffhq-1024", "e4e-ffhq", "lpips-alex-backbone", "raft-large-things", "mapper-angry",
                    "directions-styleganex", "interfacegan-smiling", "interfacegan-young", "interfacegan-eyeglasses",
                    "nada-sketch")
TORCH_ONLY_KINDS = ("mapper", "direction", "nada")


def synthetic_crops(frames: int, size: int = 1024, seed: int = 0) -> torch.Tensor:
    """[T,3,size,size] in [-1,1]: a skin-toned ellipse with eyes and mouth on a textured background, drifting and
    blinking over time (smooth motion, so optical flow has something to track)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    texture = torch.nn.functional.interpolate(torch.rand(1, 3, 32, 32, generator=g), size=(size, size),
                                              mode="bicubic", align_corners=False)[0]
    out = torch.empty(frames, 3, size, size)
    for t in range(frames):
        phase = 2 * math.pi * t / max(1, frames)
        cx, cy = 0.04 * math.sin(phase), 0.03 * math.cos(phase)
        face = (((xx - cx) / 0.55) ** 2 + ((yy - cy) / 0.72) ** 2 < 1).float()
        img = 0.35 + 0.3 * texture.roll(shifts=(t, 2 * t), dims=(1, 2))
        skin = torch.tensor([0.85, 0.65, 0.55]).view(3, 1, 1)
        img = img * (1 - face) + skin * face
        blink = 0.02 + 0.05 * (0.5 + 0.5 * math.cos(3 * phase))
        for ex in (-0.22, 0.22):
            eye = (((xx - cx - ex) / 0.09) ** 2 + ((yy - cy + 0.12) / blink) ** 2 < 1).float()
            img = img * (1 - eye) + 0.1 * eye
        mouth = (((xx - cx) / 0.2) ** 2 + ((yy - cy - 0.35) / (0.03 + 0.03 * abs(math.sin(phase)))) ** 2 < 1).float()
        img = img * (1 - mouth) + torch.tensor([0.6, 0.2, 0.2]).view(3, 1, 1) * mouth
        out[t] = img.clamp(0, 1) * 2 - 1
    return out


def _configs(preset: str, steps: int):
    from tcve.edit import EditConfig, NadaTrainConfig, TextEditConfig
    from tcve.invert import InversionConfig, PTIConfig
    from tcve.stitch import StitchConfig

    if preset == "paper":
        inversion, edit, stitch, epochs, pairs = InversionConfig(), EditConfig(), StitchConfig(), None, None
    elif preset == "preview":  # mirrors tcve.service.PRESETS['Preview'] (importing it would import av)
        inversion = InversionConfig(pti=PTIConfig(steps=2, batch_size=4))
        edit = EditConfig(text=TextEditConfig(steps=20), nada=NadaTrainConfig(steps=30))
        stitch, epochs, pairs = StitchConfig(steps=5), (1, 1), 4
    else:
        raise SystemExit(f"--preset must be 'paper' or 'preview' with --from-crops, got {preset!r}")
    if steps > 0:
        inversion = replace(inversion, pti=replace(inversion.pti, steps=steps))
        stitch, epochs, pairs = replace(stitch, steps=steps), (steps, steps), 1
    return inversion, edit, stitch, epochs, pairs


def _consistency(domain: str, edit: str, size: int, epochs, pairs):
    from tcve.consistency import ConsistencyConfig

    scale = max(1, size // 256)
    cfg = (ConsistencyConfig.out_of_domain(scale_factor=scale) if domain == "out"
           else ConsistencyConfig.in_domain(edit=edit, scale_factor=scale))
    if epochs is not None:
        cfg = replace(cfg, phase1=replace(cfg.phase1, epochs=epochs[0]), phase2=replace(cfg.phase2, epochs=epochs[1]))
    if pairs is not None:
        cfg = replace(cfg, pairs_per_step=pairs)
    return cfg


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


STAGES = ("invert", "edit", "consistency", "stitch")


def rehearse_from_crops(root: Path, frames: int, preset: str, steps: int, device: str,
                        kinds: Sequence[str] = TORCH_ONLY_KINDS, stages: Sequence[str] = STAGES,
                        costs_out: Path | None = None) -> list[Row]:
    """The rows of the table; with ``costs_out``, the first in-domain edit's stage times as per-unit GPU costs
    (``tcve.gpu_costs.fit_costs``) written there, for ``$TCVE_GPU_COSTS``."""
    from tcve import checkpoints, rehearsal
    from tcve.rehearsal import layouts

    cache = rehearsal.build(root, TORCH_ONLY_NAMES, progress=print)
    heads = root / "lpips_alex_heads.pth"
    if not heads.is_file():
        layouts.write_lpips_heads(heads, seed=0)
    rows: list[Row] = []
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    with rehearsal.activated(cache):
        from tcve.edit import EDITS, EditSpec, apply_edit
        from tcve.flow import load_flow_estimator
        from tcve.invert import invert_video, render
        from tcve.lpips_torch import TorchLPIPS
        from tcve.models import load_encoder, load_generator
        from tcve.stitch import stitch_tune
        from tcve.consistency import run_consistency

        meter = StageMeter()
        with meter.running():
            t = time.perf_counter()
            generator = checkpoints.load("stylegan2-ffhq-1024", load_generator).to(dev)
            encoder = checkpoints.load("e4e-ffhq", load_encoder).to(dev)
            lpips = TorchLPIPS(heads=heads).to(dev)
            flow = load_flow_estimator("raft-large", checkpoint="raft-large-things", device=dev)
            inputs = synthetic_crops(frames, generator.size).to(dev)
            _sync()
            rows.append(Row("-", "load models + crops", time.perf_counter() - t, _gib(meter.rss.get("load", 0)),
                            _gib(torch.cuda.max_memory_allocated()) if dev.type == "cuda" else None))
            inversion_cfg, edit_cfg, stitch_cfg, epochs, pairs = _configs(preset, steps)
            inversions = {}
            for kind in kinds:
                _, name, _ = next(k for k in EDIT_KINDS if k[0] == kind)
                domain = EDITS[name].domain

                def stage(label: str, fn):
                    meter.rss.pop(label, None)  # peaks per kind, not across kinds
                    meter.cuda.pop(label, None)
                    meter.enter(label)
                    start = time.perf_counter()
                    value = fn()
                    _sync()
                    meter.enter(f"{label}-done")
                    rows.append(Row(name, label, time.perf_counter() - start, _gib(meter.rss.get(label, 0)),
                                    _gib(meter.cuda.get(label)) if dev.type == "cuda" else None))
                    return value

                cfg = inversion_cfg if domain == "in" else replace(inversion_cfg, pti=None)
                if domain not in inversions:
                    inversions[domain] = stage("invert", lambda: invert_video(inputs, generator, encoder, lpips, cfg))
                inversion = inversions[domain]
                edit = stage("edit", lambda: apply_edit(EditSpec(name), inversion.w_plus, inversion.generator,
                                                        base_generator=generator, config=edit_cfg))
                ccfg = _consistency(domain, name, generator.size, epochs, pairs)
                if "consistency" in stages:
                    result = stage("consistency", lambda: run_consistency(edit.generator, edit.w_plus, inputs, flow,
                                                                          lpips, ccfg, mapper=edit.mapper))
                    if domain == "in" and "stitch" in stages:
                        images = (result.images if result.images is not None
                                  else render(result.generator, result.latents))
                        stage("stitch", lambda: stitch_tune(result.generator, result.latents, inputs, stitch_cfg,
                                                            edited=images))
                if domain == "in" and costs_out is not None:
                    write_costs(costs_out, rows, name, frames, generator.size, cfg, stitch_cfg, ccfg, dev)
                    costs_out = None  # the first in-domain edit only
    return rows


def write_costs(path: Path, rows: Sequence[Row], edit: str, frames: int, size: int, inversion_cfg, stitch_cfg,
                consistency_cfg, device: torch.device) -> None:
    """The measured stage times of ``edit`` as per-unit costs (``GpuCosts`` JSON)."""
    from tcve.gpu_costs import MeasuredRun, fit_costs

    seconds = {r.stage: r.seconds for r in rows if r.edit == edit}
    load = next((r.seconds for r in rows if r.stage.startswith("load")), None)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    run = MeasuredRun(frames=frames, size=size, pti_passes=inversion_cfg.pti.steps if inversion_cfg.pti else 0,
                      stitch_steps=stitch_cfg.steps, consistency_config=consistency_cfg,
                      invert=seconds.get("invert", 0.0), edit=seconds.get("edit", 0.0),
                      consistency=seconds.get("consistency", 0.0), stitch=seconds.get("stitch", 0.0), start=load)
    source = (f"measured: bench/rehearsal_crops.py on {name}, torch {torch.__version__}, {frames} frames at {size} px, "
              f"edit {edit}, {time.strftime('%Y-%m-%d')}")
    fit_costs(run, source=source).save(path)
    print(f"GPU costs fitted from the {edit} run: {path}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--preset", default="paper", help="paper | preview")
    parser.add_argument("--steps", type=int, default=0, help="steps / epochs per stage (0: the preset's own)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--edits", default=",".join(TORCH_ONLY_KINDS))
    parser.add_argument("--stages", default=",".join(STAGES),
                        help="invert,edit[,consistency[,stitch]] (fewer: a quicker smoke run)")
    parser.add_argument("--costs-out", type=Path,
                        help="write the in-domain edit's per-unit costs here (JSON for $TCVE_GPU_COSTS)")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.edits.split(",") if k.strip() in TORCH_ONLY_KINDS]
    skipped = [k.strip() for k in args.edits.split(",") if k.strip() and k.strip() not in TORCH_ONLY_KINDS]
    if skipped:
        print(f"skipped (need open_clip): {', '.join(skipped)}")
    preset = {"Paper settings": "paper", "Preview": "preview"}.get(args.preset, args.preset.lower())
    t = time.perf_counter()
    stages = [x.strip() for x in args.stages.split(",") if x.strip()]
    rows = rehearse_from_crops(args.root, args.frames, preset, args.steps, args.device, kinds, stages,
                               args.costs_out)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else "CPU"
    print_table(rows, f"Rehearsal from crops ({device}, {args.frames} frames at 1024, preset {preset}, "
                      f"steps {args.steps or 'preset'}; total {time.perf_counter() - t:.0f} s). Command: "
                      f"python -m bench.rehearsal_crops {' '.join(argv if argv is not None else sys.argv[1:])}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())

"""The consistency proof's table (the shape of the paper's Table 3) on the seeded toy clips of the consistency test.

Direct edit, latent smoothing, phase 1 only, phase 2 only and both phases on ``tcve.tiny.flickering_toy_clip``
(tiny random generator, smooth latent path, direct edit = fixed direction + i.i.d. latent jitter), OpenCV DIS flow
and a random-backbone LPIPS (no pretrained weights offline). Prints E_warp (flow on the input clip) and LPIPS to the
direct edit per seed and their means, as a Markdown table.

    python -m bench.consistency_proof                 # seeds 0-3, jitter 0.5, 5 frames
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from tcve.consistency import ConsistencyConfig, Phase1Config, Phase2Config, phase1_only, phase2_only, run_consistency
from tcve.flow import DisFlow
from tcve.losses import SpatialLPIPS
from tcve.metrics import lpips_fidelity, warping_error
from tcve.smoothing import smooth_latents
from tcve.tiny import flickering_toy_clip


def proof_config() -> ConsistencyConfig:
    """The test's settings: official in-domain preset, toy-sized steps, PD masks off (the toy edit is global);
    fresh_mapper_lr 0.02 at lr_mul 1 = the same effective step as lr 2.0 at StyleCLIP's lr_mul 0.01."""
    cfg = ConsistencyConfig.in_domain(scale_factor=2, pairs_per_step=4, progress_every=1,
                                      phase1=Phase1Config(epochs=8, fresh_mapper_lr=0.02, alpha=1.0),
                                      phase2=Phase2Config(epochs=8, lr=2e-2))
    return replace(cfg, use_pd_masks=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--jitter", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    lpips = SpatialLPIPS("alex", backbone="random")
    lpips_metric = SpatialLPIPS("alex", backbone="random", spatial=False)
    flow = DisFlow("medium")
    methods = ("direct", "smoothing", "phase 1 only", "phase 2 only", "phases 1+2")
    table: dict[str, list[tuple[float, float]]] = {m: [] for m in methods}
    for seed in args.seeds:
        toy = flickering_toy_clip(seed=seed, frames=args.frames, jitter=args.jitter, style_dim=32)
        g, w, inputs, direct = toy["g"], toy["w_edit"], toy["inputs"], toy["direct"]
        with torch.no_grad():
            videos = {"direct": direct, "smoothing": g.synthesis(smooth_latents(w))}
        runs = (("phase 1 only", phase1_only), ("phase 2 only", phase2_only), ("phases 1+2", run_consistency))
        for name, run in runs:
            videos[name] = run(g, w, inputs, flow, lpips, proof_config()).images
        for name, video in videos.items():
            table[name].append((warping_error(video, inputs, flow).mean,
                                lpips_fidelity(video, direct, lpips_metric).mean))
    seeds = " / ".join(str(s) for s in args.seeds)
    print(f"| method | E_warp (seeds {seeds}) | mean E_warp | E_warp / direct | mean LPIPS to direct |")
    print("|---|---|---|---|---|")
    direct_mean = sum(e for e, _ in table["direct"]) / len(args.seeds)
    for name, rows in table.items():
        e_mean = sum(e for e, _ in rows) / len(rows)
        l_mean = sum(lp for _, lp in rows) / len(rows)
        per_seed = " / ".join(f"{e:.4f}" for e, _ in rows)
        print(f"| {name} | {per_seed} | {e_mean:.4f} | {e_mean / direct_mean:.2f} | {l_mean:.4f} |")


if __name__ == "__main__":
    main()

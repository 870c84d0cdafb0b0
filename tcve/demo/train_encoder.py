"""Train the demo e4e-style encoder (image -> W+) for the demo generator.

Architecture: tcve's `StyleEncoder` in its e4e form (IR-SE body + feature pyramid + one map2style head per W+ row,
rows 1.. predicted as offsets of row 0), scaled down: four single-unit IR-SE stages and style_dim-wide heads, fed
64x64 images. Saved in the pSp/e4e layout {'state_dict': {'encoder.*'}, 'opts', 'latent_avg'} so
`tcve.models.load_encoder` reads it like the real e4e file.

Losses (e4e's recipe, adapted to a known latent space):
- reconstruction through the frozen demo generator: L1 at 64 and 32 px + the classifier-feature L1;
- latent supervision: the glo stage left the exact W code of every training render, so the predicted rows are
  pulled towards it (normalised by the codes' spread);
- e4e's delta regulariser: the offsets of rows 1.. from row 0 are kept small, so codes stay editable.

    nice -n 19 python -m tcve.demo.train_encoder --budget-s 1800

The small configuration is stored in opts ('stages', 'input_size'), which `load_encoder` reads back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..models.serialization import load_torch_file
from ..models import load_generator
from ..models.stylegan2 import Generator
from .classifier import WEIGHTS as CLASSIFIER_WEIGHTS
from .classifier import frames_to_image, load_classifier
from .train_common import WEIGHTS_DIR, Timer, as_plain, log_setup, parse_config, render_dataset, seed_everything
from .train_generator import DEMO_SIZE, DomainFeatures, codes_path, reconstruction_loss

logger = logging.getLogger(__name__)

# IR-SE stages (in_channel, depth, units), first unit of each with stride 2: 64 -> 32 -> 16 -> 8 -> 4 px.
# The last depth equals style_dim, as IR-SE50's 512 equals the real W width (the FPN adds it to the laterals).
DEMO_STAGES = ((32, 32, 1), (32, 48, 1), (48, 64, 1), (64, 64, 1))
DEMO_INPUT_SIZE = 64


def build_demo_encoder(n_styles: int, style_dim: int) -> nn.Module:
    """The demo e4e encoder body (tcve StyleEncoder, small configuration)."""
    from ..models.encoders import StyleEncoder

    return StyleEncoder(n_styles, input_nc=3, fpn=True, progressive=True, stages=DEMO_STAGES, style_dim=style_dim)


@dataclass(frozen=True)
class EncoderTrainConfig:
    generator: str = str(WEIGHTS_DIR / "generator.pt")
    out: str = str(WEIGHTS_DIR / "encoder_e4e.pt")
    work_dir: str = "/tmp/tcve-demo-work"
    cache_dir: str = "/tmp/tcve-demo-cache"
    seed: int = 0
    batch: int = 16
    lr: float = 1e-3
    latent_weight: float = 1.0
    delta_weight: float = 2e-2  # e4e's lambda_d2 analogue on the row offsets
    feature_weight: float = 1.0
    budget_s: float = 1800.0
    max_steps: int = 100_000
    half: bool = True
    threads: int = 1
    resume: str = ""  # a previous run's output file, to continue training it


def train(config: EncoderTrainConfig) -> dict[str, float]:
    seed_everything(config.seed, config.threads)
    g: Generator = load_generator(config.generator)
    for p in g.parameters():
        p.requires_grad_(False)
    data = load_torch_file(codes_path(config.work_dir))
    codes = data["codes"]
    frames, _ = render_dataset(len(codes), DEMO_SIZE, int(data["data_seed"]), config.cache_dir)
    images = frames_to_image(frames)
    features = DomainFeatures(load_classifier()) if CLASSIFIER_WEIGHTS.exists() and config.feature_weight > 0 else None
    encoder = build_demo_encoder(g.n_latent, g.style_dim)
    if config.resume:
        state = load_torch_file(config.resume)["state_dict"]
        encoder.load_state_dict({k.removeprefix("encoder."): v.float() for k, v in state.items()})
    latent_avg = g.latent_avg.clone()
    spread = codes.std(0).mean()
    opt = torch.optim.Adam(encoder.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    timer = Timer(config.budget_s)
    hist = []
    step = 0
    n_hold = min(64, len(codes) // 10)
    while not timer.expired() and step < config.max_steps:
        idx = torch.randint(n_hold, len(codes), (config.batch,), generator=gen)  # first n_hold held out
        x = images[idx]
        w_plus = encoder(x) + latent_avg  # upstream start_from_latent_avg
        recon = g.synthesis(w_plus, noise_mode="const")
        rec = reconstruction_loss(recon, x, features, config.feature_weight)
        lat = ((w_plus - codes[idx][:, None]) / spread).square().mean()
        delta = ((w_plus[:, 1:] - w_plus[:, :1]) / spread).square().mean()
        loss = rec + config.latent_weight * lat + config.delta_weight * delta
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        hist.append((rec.item(), lat.item(), delta.item()))
        if step % 25 == 0:
            logger.info("encoder step %d rec %.4f latent %.4f delta %.4f (%.0f s)", step, *np.mean(hist[-25:], 0),
                        timer.elapsed)
        step += 1
    encoder.eval()
    with torch.no_grad():
        x = images[:n_hold]
        heldout_l1 = F.l1_loss(g.synthesis(encoder(x) + latent_avg, noise_mode="const"), x).item()
    opts = {"encoder_type": "Encoder4Editing", "start_from_latent_avg": True, "stylegan_size": g.size,
            "style_dim": g.style_dim, "input_size": DEMO_INPUT_SIZE, "stages": [list(st) for st in DEMO_STAGES],
            "demo": True, **as_plain(config)}
    # e4e files also carry their decoder; the demo's is weights/generator.pt, not duplicated here (size budget)
    # stored in float16 (the loader casts back to float32): halves the largest file of the pack
    state = {f"encoder.{k}": v.half() if v.is_floating_point() and config.half else v
             for k, v in encoder.state_dict().items()}
    torch.save({"state_dict": state, "opts": opts, "latent_avg": latent_avg[None].expand(g.n_latent, -1).clone()},
               config.out)
    return {"steps": float(step), "seconds": timer.elapsed, "heldout_l1": heldout_l1,
            "rec_last": float(np.mean([h[0] for h in hist[-25:]]))}


def main(argv: Sequence[str] | None = None) -> None:
    log_setup()
    result = train(parse_config(EncoderTrainConfig, argv, __doc__ or ""))
    print(" ".join(f"{k}={v:.4g}" for k, v in result.items()))


if __name__ == "__main__":
    main()

"""Fine-tune the demo generator into an out-of-domain "ink sketch" generator (the demo's StyleGAN-NADA stand-in).

StyleGAN-NADA shifts a generator's domain with a CLIP direction loss. The demo has no CLIP weights, so the target
domain is defined by an image filter instead: `ink_sketch(frame)` turns a render into black ink lines (extended
difference of Gaussians) over flat, paper-tinted tones. The style generator starts as a copy of the base generator
and its synthesis layers are fitted so that G_style(w_i) = ink_sketch(render_i) for the glo codes w_i of the
training renders; the mapping network is left as it is, so one W code gives the same person in both domains.

Output: a NADA-layout file {'g_ema': state_dict, 'latent_avg': [style_dim]}.

    nice -n 19 python -m tcve.demo.train_style --budget-s 900
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..models.serialization import load_torch_file
from ..models import load_generator
from .classifier import frames_to_image
from .train_common import WEIGHTS_DIR, Timer, as_plain, log_setup, parse_config, render_dataset, seed_everything
from .train_generator import DEMO_SIZE, codes_path

logger = logging.getLogger(__name__)

PAPER = np.array((246, 240, 226), np.float32)


def ink_sketch(frame: np.ndarray, line_sigma: float | None = None) -> np.ndarray:
    """frame [H,W,3] uint8 RGB -> the same scene as an ink sketch [H,W,3] uint8 (deterministic).

    Lines: XDoG on the luminance (sigma scaled with the frame size); tones: a compressed wash of the blurred
    luminance on paper (continuous, so smooth gradients do not band).
    """
    h = frame.shape[0]
    sigma = line_sigma if line_sigma is not None else max(0.5, h / 128)
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    g1 = cv2.GaussianBlur(gray, (0, 0), sigma)
    g2 = cv2.GaussianBlur(gray, (0, 0), sigma * 1.6)
    dog = g1 - 0.98 * g2
    ink = np.clip(1.0 + np.tanh(25.0 * (dog - 0.005)), 0, 1)  # 1 = paper, 0 = ink
    tone = 1.0 - 0.5 * np.clip(1.0 - g2, 0, 1) ** 1.5
    out = PAPER[None, None, :] * (tone * ink)[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class StyleTrainConfig:
    generator: str = str(WEIGHTS_DIR / "generator.pt")
    out: str = str(WEIGHTS_DIR / "generator_sketch.pt")
    work_dir: str = "/tmp/tcve-demo-work"
    cache_dir: str = "/tmp/tcve-demo-cache"
    seed: int = 0
    batch: int = 16
    lr: float = 1e-3
    code_noise: float = 0.1  # relative code perturbation, as in the glo stage
    budget_s: float = 900.0
    max_steps: int = 100_000
    threads: int = 1


def train(config: StyleTrainConfig) -> dict[str, float]:
    seed_everything(config.seed, config.threads)
    g = load_generator(config.generator)
    data = load_torch_file(codes_path(config.work_dir))
    codes = data["codes"]
    frames, _ = render_dataset(len(codes), DEMO_SIZE, int(data["data_seed"]), config.cache_dir)
    targets = frames_to_image(np.stack([ink_sketch(f) for f in frames]))
    g.train()
    params = [p for n, p in g.named_parameters() if not n.startswith("style.")]
    for p in g.style.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(params, lr=config.lr, betas=(0.0, 0.99))
    gen = torch.Generator().manual_seed(config.seed)
    spread = codes.std(0).mean()
    timer = Timer(config.budget_s)
    losses = []
    step = 0
    while not timer.expired() and step < config.max_steps:
        idx = torch.randint(0, len(codes), (config.batch,), generator=gen)
        w = codes[idx] + config.code_noise * spread * torch.randn(config.batch, codes.shape[1], generator=gen)
        fake = g.synthesis(w[:, None].expand(-1, g.n_latent, -1), noise_mode="none")
        loss = F.l1_loss(fake, targets[idx]) + F.l1_loss(F.avg_pool2d(fake, 2), F.avg_pool2d(targets[idx], 2))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 25 == 0:
            logger.info("style step %d loss %.4f (%.0f s)", step, np.mean(losses[-25:]), timer.elapsed)
        step += 1
    g.eval()
    torch.save({"g_ema": g.state_dict(), "latent_avg": g.latent_avg.clone(), "style": "ink-sketch",
                "opts": as_plain(config)}, config.out)
    return {"steps": float(step), "seconds": timer.elapsed, "first_loss": float(np.mean(losses[:10])),
            "last_loss": float(np.mean(losses[-25:]))}


def main(argv: Sequence[str] | None = None) -> None:
    log_setup()
    result = train(parse_config(StyleTrainConfig, argv, __doc__ or ""))
    print(" ".join(f"{k}={v:.4g}" for k, v in result.items()))


if __name__ == "__main__":
    main()

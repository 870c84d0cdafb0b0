"""Train the demo StyleGAN2 generator without a discriminator (GLO-style), then fit its mapping network.

Adversarial training is far too slow on two CPU cores, so the generator is fitted as a decoder:

1. Stage "glo": every training render i gets a free W code w_i [512] (initialised from the untrained mapping of a
   random z). Codes and synthesis weights are optimised jointly on reconstruction: L1 at full and half resolution
   plus, when the demo classifier is available, an L1 on its first feature maps (a perceptual loss that knows the
   domain; no pretrained LPIPS exists offline). Codes are perturbed with Gaussian noise during training so that the
   neighbourhood of each code also decodes to a face, which is what makes sampling and editing work afterwards.
2. Stage "mapping": a Gaussian N(mu, Sigma) is fitted to the learned codes, and the mapping MLP is regressed onto
   z -> mu + Sigma^(1/2) z (z ~ N(0, I)), so mapping(z) samples that Gaussian and `latent_avg` = mu.

Output: a rosinality-layout file {'g_ema': state_dict, 'latent_avg': [512]} plus the learned codes and attribute
labels of the training renders (`*.codes.pt`, used by train_directions / train_encoder).

    nice -n 19 python -m tcve.demo.train_generator --budget-s 3600
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..models.stylegan2 import Generator
from .classifier import WEIGHTS as CLASSIFIER_WEIGHTS
from .classifier import AttributeClassifier, frames_to_image, load_classifier
from .faces import CONTINUOUS
from .train_common import (WEIGHTS_DIR, Timer, as_plain, attribute_matrix, log_setup, parse_config, render_dataset,
                           seed_everything)

logger = logging.getLogger(__name__)

# The demo generator's architecture (rosinality Generator arguments). style_dim is 64, not 512: the e4e-layout
# encoder's map2style heads grow with style_dim squared, and the pack must stay well under 20 MB.
DEMO_SIZE = 64
DEMO_STYLE_DIM = 64
DEMO_N_MLP = 4
DEMO_CHANNELS = {4: 128, 8: 128, 16: 64, 32: 64, 64: 32}


def build_demo_generator() -> Generator:
    return Generator(DEMO_SIZE, DEMO_STYLE_DIM, DEMO_N_MLP, channel_multiplier=1, channels=DEMO_CHANNELS)


@dataclass(frozen=True)
class GeneratorTrainConfig:
    out: str = str(WEIGHTS_DIR / "generator.pt")
    seed: int = 0
    n_images: int = 4000
    batch: int = 16
    lr_g: float = 2e-3
    lr_codes: float = 1e-2
    code_noise: float = 0.2  # std of the code perturbation, relative to the codes' per-dimension std
    code_reg: float = 1e-3  # pull of each code towards the codes' mean (keeps the cloud compact and Gaussian-like)
    feature_weight: float = 1.0  # weight of the classifier-feature loss (0 disables it)
    budget_s: float = 3600.0  # wall time of the glo stage
    max_steps: int = 1_000_000
    mapping_steps: int = 1500
    mapping_batch: int = 256
    log_every: int = 25
    cache_dir: str = "/tmp/tcve-demo-cache"
    work_dir: str = "/tmp/tcve-demo-work"  # intermediates that are not shipped (the learned codes)
    threads: int = 1
    resume: str = ""  # a previous run's output, to continue its glo stage


class DomainFeatures(torch.nn.Module):
    """The demo classifier's first two blocks as a frozen feature extractor (a domain-specific perceptual loss)."""

    def __init__(self, classifier: AttributeClassifier):
        super().__init__()
        self.blocks = classifier.features[:2].eval()
        for p in self.blocks.parameters():
            p.requires_grad_(False)

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        x = image
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats


def reconstruction_loss(fake: torch.Tensor, real: torch.Tensor, features: DomainFeatures | None,
                        feature_weight: float) -> torch.Tensor:
    """L1 at 64 and 32 px, plus the classifier-feature L1. fake/real [B,3,64,64] in [-1,1]."""
    loss = F.l1_loss(fake, real) + F.l1_loss(F.avg_pool2d(fake, 2), F.avg_pool2d(real, 2))
    if features is not None and feature_weight > 0:
        for a, b in zip(features(fake), features(real)):
            loss = loss + feature_weight * F.l1_loss(a, b)
    return loss


def fit_gaussian(codes: torch.Tensor, shrink: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """codes [N,D] -> (mu [D], symmetric square root of the (slightly shrunk) covariance [D,D])."""
    mu = codes.mean(0)
    x = codes - mu
    cov = x.T @ x / max(len(codes) - 1, 1)
    cov = (1 - shrink) * cov + shrink * cov.diagonal().mean() * torch.eye(cov.shape[0])
    evals, evecs = torch.linalg.eigh(cov.double())
    sqrt = (evecs * evals.clamp_min(0).sqrt()) @ evecs.T
    return mu, sqrt.float()


def fit_mapping(g: Generator, mu: torch.Tensor, sqrt_cov: torch.Tensor, steps: int, batch: int,
                seed: int) -> float:
    """Regress g.style so that mapping(z) = mu + sqrt_cov @ z; returns the final relative error."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(g.style.parameters(), lr=3e-3)
    scale = sqrt_cov.diagonal().mean()
    err = float("nan")
    for step in range(steps):
        z = torch.randn(batch, g.style_dim, generator=gen)
        # PixelNorm inside the mapping rescales z to norm sqrt(D); regress onto the same normalised z
        zn = z * torch.rsqrt(z.square().mean(1, keepdim=True) + 1e-8)
        target = mu + zn @ sqrt_cov.T
        loss = ((g.style(z) - target) / scale).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        err = loss.item()
        if step % 250 == 0:
            logger.info("mapping step %d relative mse %.4f", step, err)
    return err


def train(config: GeneratorTrainConfig) -> dict[str, float]:
    seed_everything(config.seed, config.threads)
    frames, attrs = render_dataset(config.n_images, DEMO_SIZE, config.seed + 1, config.cache_dir)
    images = frames_to_image(frames)
    g = build_demo_generator()
    features = None
    if config.feature_weight > 0 and Path(CLASSIFIER_WEIGHTS).exists():
        features = DomainFeatures(load_classifier())

    with torch.no_grad():
        codes = g.style(torch.randn(config.n_images, g.style_dim))
    step0 = 0
    if config.resume:
        from ..models.serialization import load_torch_file

        prev = load_torch_file(config.resume)
        g.load_state_dict(prev["g_ema"])
        codes = load_torch_file(codes_path(config.work_dir))["codes"]
        step0 = int(prev.get("steps", 0))
    codes = torch.nn.Parameter(codes.clone())
    synthesis_params = [p for n, p in g.named_parameters() if not n.startswith("style.")]
    opt = torch.optim.Adam([{"params": synthesis_params, "lr": config.lr_g, "betas": (0.0, 0.99)},
                            {"params": [codes], "lr": config.lr_codes, "betas": (0.9, 0.99)}])
    gen = torch.Generator().manual_seed(config.seed)
    timer = Timer(config.budget_s)
    losses: list[float] = []
    first_loss = None
    step = 0
    step_times = []
    while not timer.expired() and step < config.max_steps:
        t0 = time.time()
        idx = torch.randint(0, config.n_images, (config.batch,), generator=gen)
        w = codes[idx]
        with torch.no_grad():
            spread = codes.std(0).mean()
            centre = codes.mean(0)
        w_noisy = w + config.code_noise * spread * torch.randn(w.shape, generator=gen)
        fake = g.synthesis(w_noisy[:, None].expand(-1, g.n_latent, -1), noise_mode="none")
        loss = reconstruction_loss(fake, images[idx], features, config.feature_weight)
        loss = loss + config.code_reg * ((w - centre) / spread).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        step_times.append(time.time() - t0)
        if first_loss is None:
            first_loss = losses[0]
        if step % config.log_every == 0:
            logger.info("glo step %d loss %.4f (%.2f s/step, %.0f s)", step0 + step, np.mean(losses[-config.log_every:]),
                        np.mean(step_times[-config.log_every:]), timer.elapsed)
        step += 1
    glo_seconds = timer.elapsed

    codes = codes.detach()
    mu, sqrt_cov = fit_gaussian(codes)
    mapping_start = time.time()
    mapping_err = fit_mapping(g, mu, sqrt_cov, config.mapping_steps, config.mapping_batch, config.seed)
    g.latent_avg.copy_(mu)

    # final reconstruction error on the training renders, without code noise
    with torch.no_grad():
        idx = torch.arange(min(64, config.n_images))
        fake = g.synthesis(codes[idx][:, None].expand(-1, g.n_latent, -1), noise_mode="none")
        recon_l1 = F.l1_loss(fake, images[idx]).item()
    torch.save({"g_ema": g.state_dict(), "latent_avg": mu.clone(), "steps": step0 + step,
                "opts": as_plain(config)}, config.out)
    names = list(CONTINUOUS) + ["eyeglasses", "beard", "hair_style"]
    torch.save({"codes": codes.clone(), "attribute_names": names,
                "attributes": torch.from_numpy(attribute_matrix(attrs, names)), "data_seed": config.seed + 1},
               codes_path(config.work_dir))
    result = {"glo_steps": float(step), "glo_seconds": glo_seconds,
              "seconds_per_step": float(np.mean(step_times)) if step_times else float("nan"),
              "first_loss": float(first_loss or float("nan")), "last_loss": float(np.mean(losses[-50:])),
              "recon_l1": recon_l1, "mapping_rel_mse": mapping_err, "mapping_seconds": time.time() - mapping_start}
    logger.info("done: %s", result)
    return result


def codes_path(work_dir: str) -> Path:
    """Where the glo stage leaves the learned codes and the attributes of their renders."""
    path = Path(work_dir) / "generator.codes.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    log_setup()
    result = train(parse_config(GeneratorTrainConfig, argv, __doc__ or ""))
    print(" ".join(f"{k}={v:.4g}" for k, v in result.items()))


if __name__ == "__main__":
    main()

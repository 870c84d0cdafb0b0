"""Train the demo StyleGAN2 generator without a discriminator (GLO-style), then fit its mapping network.

Adversarial training is far too slow on two CPU cores, so the generator is fitted as a decoder:

1. Stage "glo": every training render i gets a free W code w_i [style_dim] (initialised from a random embedding of
   the render's ground-truth attributes, see `initial_codes`). Codes and synthesis weights are optimised jointly on
   reconstruction: L1 at full and half resolution
   plus, when the demo classifier is available, an L1 on its first feature maps (a perceptual loss that knows the
   domain; no pretrained LPIPS exists offline). Codes are perturbed with Gaussian noise during training so that the
   neighbourhood of each code also decodes to a face, which is what makes sampling and editing work afterwards.
2. Stage "mapping": a Gaussian N(mu, Sigma) is fitted to the learned codes and the mapping MLP is set in closed
   form to z -> mu + Sigma^(1/2) PixelNorm(z) (see `set_mapping`), so mapping(z) samples that Gaussian and
   `latent_avg` = mu. (W is shifted by a constant on the way, which the modulation biases absorb exactly.)

Output: a rosinality-layout file {'g_ema': state_dict, 'latent_avg': [style_dim]} plus, under --work-dir, the
learned codes and attribute labels of the training renders (`generator.codes.pt`, used by train_directions,
train_encoder and train_style).

    python -m tcve.demo.train_generator --max-steps 5184 --budget-s 1e9 --threads 2 --grid /tmp/demo_gen.png

The shipped file is that run: 5184 steps in 30 minutes on two CPU cores (0.35 s/step), final L1 0.044 on training
renders; the demo classifier reads every attribute of the reconstructions with 0.90-1.00 accuracy and is 0.97 sure
of random samples on average. Runs are seeded; with --max-steps (not the wall-clock budget) as the stopping rule
they are repeatable (up to float reduction order across thread counts).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..models.stylegan2 import Generator
from .classifier import WEIGHTS as CLASSIFIER_WEIGHTS
from .classifier import HEADS, AttributeClassifier, accuracy, frames_to_image, labels_for, load_classifier
from .faces import CONTINUOUS, FaceAttributes
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
    lr_g: float = 1e-2
    lr_codes: float = 1e-2
    beta1: float = 0.9  # Adam's first moment for the synthesis weights (a regression: momentum halves the steps)
    code_noise: float = 0.1  # std of the code perturbation, relative to the codes' per-dimension std
    code_reg: float = 1e-3  # pull of each code towards the codes' mean (keeps the cloud compact and Gaussian-like)
    feature_weight: float = 1.0  # weight of the classifier-feature loss (0 disables it)
    budget_s: float = 1800.0  # wall time of the glo stage
    max_steps: int = 1_000_000
    log_every: int = 25
    cache_dir: str = "/tmp/tcve-demo-cache"
    work_dir: str = "/tmp/tcve-demo-work"  # intermediates that are not shipped (the learned codes)
    threads: int = 1
    resume: str = ""  # a previous run's output, to continue its glo stage
    grid: str = ""  # where to save a PNG of renders / reconstructions / random samples ("" = none)
    attribute_init: bool = True  # start codes from a random embedding of the ground-truth attributes
    device: str = "cpu"  # e.g. "cuda": the glo stage is hours on a CPU, minutes on a GPU


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


def initial_codes(labels: torch.Tensor, style_dim: int, seed: int, noise: float = 0.3) -> torch.Tensor:
    """Codes [N, style_dim] that start out organised by the renders' attributes [N, A].

    Standardised attributes through a random orthonormal embedding, plus noise for what they do not describe
    (unit variance per dimension on average). Optimisation is free to move them; starting from the attributes
    makes the glo stage converge in far fewer visits per image and keeps the attributes linear in W.
    """
    gen = torch.Generator().manual_seed(seed)
    x = (labels - labels.mean(0)) / labels.std(0).clamp_min(1e-6)
    q, _ = torch.linalg.qr(torch.randn(style_dim, x.shape[1], generator=gen))
    codes = x @ q.T * (style_dim / x.shape[1]) ** 0.5 * (1 - noise ** 2) ** 0.5
    return codes + noise * torch.randn(codes.shape, generator=gen)


def fit_gaussian(codes: torch.Tensor, shrink: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """codes [N,D] -> (mu [D], symmetric square root of the (slightly shrunk) covariance [D,D])."""
    mu = codes.mean(0)
    x = codes - mu
    cov = x.T @ x / max(len(codes) - 1, 1)
    cov = (1 - shrink) * cov + shrink * cov.diagonal().mean() * torch.eye(cov.shape[0])
    evals, evecs = torch.linalg.eigh(cov.double())
    sqrt = (evecs * evals.clamp_min(0).sqrt()) @ evecs.T
    return mu, sqrt.float()


def shift_w_space(g: Generator, shift: torch.Tensor) -> None:
    """Re-express the generator in W' = W + shift: every consumer of w is an affine modulation, whose bias absorbs
    the shift exactly (s = A w + b = A w' + (b - A shift))."""
    with torch.no_grad():
        for _, layer, _ in g.modulated_layers():
            mod = layer.conv.modulation
            mod.bias -= (mod.weight * mod.scale) @ shift / mod.lr_mul


def set_mapping(g: Generator, mu: torch.Tensor, sqrt_cov: torch.Tensor, margin: float = 6.0) -> torch.Tensor:
    """Set the mapping MLP in closed form so that mapping(z) = mu' + sqrt_cov @ PixelNorm(z), exactly.

    Each mapping layer is EqualLinear + leaky ReLU * sqrt(2). The first lifts PixelNorm(z) by a constant into the
    ReLU's linear range, the middle ones pass it on, the last applies sqrt_cov and the mean. The last layer's
    ReLU stays linear only for positive outputs, so W is first shifted (`shift_w_space`) until mu' = mu + shift
    lies `margin` standard deviations above zero in every dimension. Returns the shift (add it to any code that
    was learned before, e.g. the glo codes).
    """
    d = g.style_dim
    std = sqrt_cov.square().sum(1).sqrt()  # per-dimension std of the Gaussian
    shift = margin * std - mu
    shift_w_space(g, shift)
    mu_shifted = mu + shift
    lift = 8.0  # PixelNorm(z) has |entries| well below 8 in practice (norm sqrt(d))
    eye = torch.eye(d)
    layers = [m for m in g.style if hasattr(m, "weight")]
    sqrt2 = 2.0 ** 0.5
    with torch.no_grad():
        for k, layer in enumerate(layers):
            if k == 0:
                w_eff, b_eff = eye, torch.full((d,), lift)
            elif k < len(layers) - 1:
                w_eff, b_eff = eye / sqrt2, torch.zeros(d)
            else:
                # input is sqrt2 * (zn + lift); output sqrt2 * pre must be mu' + S zn
                w_eff = sqrt_cov / 2.0
                b_eff = (mu_shifted - sqrt_cov @ torch.full((d,), lift)) / sqrt2
            layer.weight.copy_(w_eff / layer.scale)
            layer.bias.copy_(b_eff / layer.lr_mul)
    if len(layers) == 1:
        raise ValueError("the closed-form mapping needs n_mlp >= 2")
    g.latent_avg.copy_(mu_shifted)
    return shift


def train(config: GeneratorTrainConfig) -> dict[str, float]:
    seed_everything(config.seed, config.threads)
    frames, attrs = render_dataset(config.n_images, DEMO_SIZE, config.seed + 1, config.cache_dir)
    images = frames_to_image(frames)
    g = build_demo_generator()
    features = None
    if config.feature_weight > 0 and Path(CLASSIFIER_WEIGHTS).exists():
        features = DomainFeatures(load_classifier())

    names = list(CONTINUOUS) + ["eyeglasses", "beard", "hair_style"]
    labels = torch.from_numpy(attribute_matrix(attrs, names))
    codes = initial_codes(labels, g.style_dim, config.seed) if config.attribute_init else \
        g.style(torch.randn(config.n_images, g.style_dim)).detach()
    step0 = 0
    if config.resume:
        from ..models.serialization import load_torch_file

        prev = load_torch_file(config.resume)
        g.load_state_dict(prev["g_ema"])
        codes = load_torch_file(codes_path(config.work_dir))["codes"]
        step0 = int(prev.get("steps", 0))
    # one code per image, updated only when its image is in the batch (sparse rows, as GLO)
    device = torch.device(config.device)
    table = torch.nn.Embedding(config.n_images, g.style_dim, sparse=True)
    table.weight.data.copy_(codes)
    table, g, images = table.to(device), g.to(device), images.to(device)
    if features is not None:
        features = features.to(device)
    synthesis_params = [p for n, p in g.named_parameters() if not n.startswith("style.")]
    opt = torch.optim.Adam(synthesis_params, lr=config.lr_g, betas=(config.beta1, 0.99))
    opt_codes = torch.optim.SparseAdam(table.parameters(), lr=config.lr_codes)
    gen = torch.Generator().manual_seed(config.seed)
    timer = Timer(config.budget_s)
    losses: list[float] = []
    first_loss = None
    step = 0
    step_times = []
    while not timer.expired() and step < config.max_steps:
        t0 = time.time()
        idx = torch.randint(0, config.n_images, (config.batch,), generator=gen).to(device)
        w = table(idx)
        if step % 50 == 0:
            with torch.no_grad():
                spread = table.weight.std(0).mean()
                centre = table.weight.mean(0)
        w_noisy = w + config.code_noise * spread * torch.randn(w.shape, generator=gen).to(device)
        fake = g.synthesis(w_noisy[:, None].expand(-1, g.n_latent, -1), noise_mode="none")
        loss = reconstruction_loss(fake, images[idx], features, config.feature_weight)
        loss = loss + config.code_reg * ((w - centre) / spread).square().mean()
        opt.zero_grad(set_to_none=True)
        opt_codes.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        opt_codes.step()
        losses.append(loss.item())
        step_times.append(time.time() - t0)
        if first_loss is None:
            first_loss = losses[0]
        if config.grid and step % (config.log_every * 20) == 0:
            save_progress_grid(g, table.weight[:8].detach(), images[:8], config.grid)
        if step % config.log_every == 0:
            logger.info("glo step %d loss %.4f (%.2f s/step, %.0f s)", step0 + step,
                        np.mean(losses[-config.log_every:]),
                        np.mean(step_times[-config.log_every:]), timer.elapsed)
        step += 1
    glo_seconds = timer.elapsed

    # the mapping fit and evaluation are cheap: back on the CPU
    codes = table.weight.detach().cpu().clone()
    g, images = g.cpu(), images.cpu()
    mu, sqrt_cov = fit_gaussian(codes)
    shift = set_mapping(g, mu, sqrt_cov)
    codes = codes + shift
    mu = mu + shift
    with torch.no_grad():  # how well mapping(z) matches the fitted Gaussian (mean / covariance errors)
        w = g.mapping(torch.randn(4096, g.style_dim, generator=gen))
        cov = sqrt_cov @ sqrt_cov
        mapping_err = float((torch.cov(w.T) - cov).abs().max() / cov.abs().max())
        mean_err = float(((w.mean(0) - mu).abs() / sqrt_cov.square().sum(1).sqrt()).max())

    # final reconstruction error on the training renders, without code noise
    with torch.no_grad():
        idx = torch.arange(min(64, config.n_images))
        fake = g.synthesis(codes[idx][:, None].expand(-1, g.n_latent, -1), noise_mode="none")
        recon_l1 = F.l1_loss(fake, images[idx]).item()
    quality = evaluate_generator(g, load_classifier(), codes, images, attrs, config.grid) \
        if Path(CLASSIFIER_WEIGHTS).exists() else {}
    torch.save({"g_ema": g.state_dict(), "latent_avg": mu.clone(), "steps": step0 + step,
                "opts": as_plain(config)}, config.out)
    torch.save({"codes": codes, "attribute_names": names, "attributes": labels, "data_seed": config.seed + 1},
               codes_path(config.work_dir))
    result = {"glo_steps": float(step), "glo_seconds": glo_seconds,
              "seconds_per_step": float(np.mean(step_times)) if step_times else float("nan"),
              "first_loss": float(first_loss or float("nan")), "last_loss": float(np.mean(losses[-50:])),
              "recon_l1": recon_l1, "mapping_cov_rel_err": mapping_err, "mapping_mean_err_std": mean_err, **quality}
    logger.info("done: %s", result)
    return result


@torch.no_grad()
def evaluate_generator(g: Generator, classifier: AttributeClassifier, codes: torch.Tensor, images: torch.Tensor,
                       attrs: Sequence[FaceAttributes], grid: str = "", n: int = 192) -> dict[str, float]:
    """Does the generator draw recognisable faces? Judged by the demo classifier:

    - acc_<head>: classifier accuracy on reconstructions G(w_i) against the ground truth of render i;
    - sample_confidence: mean over heads of the top class probability on random samples G(mapping(z)) (renders
      score about 0.95; noise or mush scores near 1/n_classes);
    - sample_rate_<head> vs data_rate_<head>: share of samples / renders classified 'yes' (binary heads).
    """
    n = min(n, len(codes))
    gen = torch.Generator().manual_seed(1)
    recon = torch.cat([g.synthesis(codes[i:i + 32][:, None].expand(-1, g.n_latent, -1), noise_mode="const")
                       for i in range(0, n, 32)])
    acc = accuracy(classifier, recon.clamp(-1, 1), labels_for(list(attrs[:n])))
    samples = torch.cat([g(torch.randn(32, g.style_dim, generator=gen), input_is="z", noise_mode="const")
                         for _ in range(0, n, 32)]).clamp(-1, 1)
    probs = classifier.split(classifier(samples))
    data_probs = classifier.split(classifier(images[:n]))
    out = {f"acc_{k}": v for k, v in acc.items()}
    out["sample_confidence"] = float(torch.stack([p.softmax(-1).max(-1).values.mean() for p in probs.values()]).mean())
    for h in HEADS:
        if h.classes == ("no", "yes"):
            out[f"sample_rate_{h.name}"] = float(probs[h.name].argmax(-1).float().mean())
            out[f"data_rate_{h.name}"] = float(data_probs[h.name].argmax(-1).float().mean())
    if grid:
        save_grid([images[:8], recon[:8], samples[:8], samples[8:16]], grid)
    return out


@torch.no_grad()
def save_progress_grid(g: Generator, codes: torch.Tensor, images: torch.Tensor, path: str) -> None:
    """Renders over their reconstructions, so a long run can be watched."""
    recon = g.synthesis(codes[:, None].expand(-1, g.n_latent, -1), noise_mode="none")
    save_grid([images.cpu(), recon.cpu()], path)


def save_grid(rows: Sequence[torch.Tensor], path: str) -> None:
    """rows of [N,3,H,W] images in [-1,1] as one PNG."""
    tiles = torch.cat([torch.cat(list(r), dim=2) for r in rows], dim=1)
    frame = ((tiles.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(path, cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))


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

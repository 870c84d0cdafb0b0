"""Train the demo pack's StyleCLIP-style latent mappers, guided by the demo attribute classifier instead of CLIP.

StyleCLIP trains `w_edit = w + 0.1 * M(w)` with a CLIP loss towards a text, an L2 penalty on the step and an
identity loss. Here the text is replaced by a classifier target (e.g. eyeglasses = yes), and identity by keeping
the classifier's other heads unchanged plus a low-resolution L1 to the unedited image (pose, colours, hair).

Training codes are the demo encoder's inversions of renders, the codes the pipeline edits (StyleCLIP trains on
e4e inversions too). Their W+ rows differ, which matters: the mapper's PixelNorm normalises across rows, so codes
with identical rows (plain mapping(z) samples) would reach it as signs only.

Edits (one file each, StyleCLIP layout {'state_dict': {'mapper.*'}, 'opts'}):
- eyeglasses: eyeglasses -> yes
- angry: brows -> angry, smile -> no
- surprised: brows -> surprised, mouth_open -> yes

    nice -n 19 python -m tcve.demo.train_mappers --edits eyeglasses,angry,surprised --budget-s 600
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

from ..models.mapper import LevelsMapper
from ..models import load_generator
from ..models.stylegan2 import Generator
from .classifier import HEADS, AttributeClassifier, load_classifier
from .train_common import WEIGHTS_DIR, Timer, log_setup, parse_config, seed_everything

logger = logging.getLogger(__name__)

MAPPER_STEP = 0.1  # StyleCLIP's fixed scale of the mapper output during training (w + 0.1 * M(w))

# edit -> {classifier head: target class index}
EDIT_TARGETS: dict[str, dict[str, int]] = {
    "eyeglasses": {"eyeglasses": 1},
    "angry": {"brows": 0, "smile": 0},
    "surprised": {"brows": 2, "mouth_open": 1},
}


@dataclass(frozen=True)
class MapperTrainConfig:
    edits: str = "eyeglasses,angry,surprised"
    generator: str = str(WEIGHTS_DIR / "generator.pt")
    encoder: str = str(WEIGHTS_DIR / "encoder_e4e.pt")  # "" = train on mapping(z) samples instead of inversions
    n_codes: int = 2000  # renders inverted once to form the training codes
    cache_dir: str = "/tmp/tcve-demo-cache"
    out_dir: str = str(WEIGHTS_DIR / "mappers")
    seed: int = 0
    batch: int = 16
    lr: float = 0.5  # StyleCLIP's: its EqualLinear layers have lr_mul 0.01
    l2_weight: float = 0.8  # StyleCLIP's latent L2 lambda
    keep_weight: float = 1.0  # KL of the untouched classifier heads
    image_weight: float = 2.0  # L1 between 16x16 thumbnails of the edited and the original image
    no_fine: bool = True  # rows 8+ (64 px colour layers) are left alone, as most StyleCLIP mappers do
    budget_s: float = 300.0  # wall time per edit
    max_steps: int = 2000
    threads: int = 1


def edit_loss(classifier: AttributeClassifier, edited: torch.Tensor, original: torch.Tensor,
              targets: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(target cross-entropy, KL of the other heads from the original) for images [B,3,H,W]."""
    logits_e = classifier.split(classifier(edited))
    with torch.no_grad():
        logits_o = classifier.split(classifier(original))
    target_loss = edited.new_zeros(())
    keep_loss = edited.new_zeros(())
    for h in HEADS:
        if h.name in targets:
            y = torch.full((edited.shape[0],), targets[h.name], dtype=torch.long)
            target_loss = target_loss + F.cross_entropy(logits_e[h.name], y)
        else:
            keep_loss = keep_loss + F.kl_div(logits_e[h.name].log_softmax(-1), logits_o[h.name].log_softmax(-1),
                                             log_target=True, reduction="batchmean")
    return target_loss, keep_loss


def sample_w_plus(g: Generator, batch: int, gen: torch.Generator) -> torch.Tensor:
    """mapping(z) codes, repeated over the W+ rows. [B, n_latent, style_dim]."""
    with torch.no_grad():
        w = g.mapping(torch.randn(batch, g.style_dim, generator=gen))
    return w[:, None].expand(-1, g.n_latent, -1).contiguous()


@torch.no_grad()
def inverted_codes(config: MapperTrainConfig) -> torch.Tensor:
    """The encoder's W+ codes [n_codes, n_latent, style_dim] of renders from their own seed (not the test data)."""
    from ..models import load_encoder
    from .classifier import frames_to_image
    from .train_common import render_dataset
    from .train_generator import DEMO_SIZE

    encoder = load_encoder(config.encoder)
    frames, _ = render_dataset(config.n_codes, DEMO_SIZE, config.seed + 7, config.cache_dir)
    images = frames_to_image(frames)
    return torch.cat([encoder(images[i:i + 64]) for i in range(0, len(images), 64)])


def train_one(edit: str, g: Generator, classifier: AttributeClassifier, config: MapperTrainConfig,
              codes: torch.Tensor | None = None) -> dict[str, float]:
    targets = EDIT_TARGETS[edit]
    mapper = LevelsMapper(no_fine=config.no_fine, n_latent=g.n_latent, style_dim=g.style_dim)
    opt = torch.optim.Adam(mapper.parameters(), lr=config.lr)
    gen = torch.Generator().manual_seed(config.seed)
    timer = Timer(config.budget_s)
    hist: list[tuple[float, float, float]] = []
    step = 0
    while not timer.expired() and step < config.max_steps:
        if codes is None:
            w = sample_w_plus(g, config.batch, gen)
        else:
            w = codes[torch.randint(0, len(codes), (config.batch,), generator=gen)]
        with torch.no_grad():
            original = g.synthesis(w, noise_mode="const")
        delta = MAPPER_STEP * mapper(w)
        edited = g.synthesis(w + delta, noise_mode="const")
        target_loss, keep_loss = edit_loss(classifier, edited, original, targets)
        l2 = delta.square().mean()
        image = F.l1_loss(F.adaptive_avg_pool2d(edited, 16), F.adaptive_avg_pool2d(original, 16))
        loss = target_loss + config.keep_weight * keep_loss + config.l2_weight * l2 + config.image_weight * image
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        hist.append((target_loss.item(), keep_loss.item(), l2.item()))
        if step % 25 == 0:
            m = np.mean(hist[-25:], 0)
            logger.info("%s step %d target %.3f keep %.3f l2 %.4f (%.0f s)", edit, step, *m, timer.elapsed)
        step += 1
    path = Path(config.out_dir) / f"{edit}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    opts = {"mapper_type": "LevelsMapper", "no_coarse_mapper": False, "no_medium_mapper": False,
            "no_fine_mapper": config.no_fine, "description": edit, "classifier_targets": dict(targets),
            "stylegan_size": g.size, "style_dim": g.style_dim, "seed": config.seed, "steps": step}
    torch.save({"state_dict": {f"mapper.{k}": v for k, v in mapper.state_dict().items()}, "opts": opts}, path)
    first, last = np.mean(hist[:10], 0), np.mean(hist[-25:], 0)
    return {"steps": float(step), "seconds": timer.elapsed, "target_first": float(first[0]),
            "target_last": float(last[0]), "keep_last": float(last[1])}


def train(config: MapperTrainConfig) -> dict[str, dict[str, float]]:
    seed_everything(config.seed, config.threads)
    g = load_generator(config.generator)
    for p in g.parameters():
        p.requires_grad_(False)
    classifier = load_classifier()
    for p in classifier.parameters():
        p.requires_grad_(False)
    codes = inverted_codes(config) if config.encoder else None
    results = {}
    for edit in config.edits.split(","):
        if edit not in EDIT_TARGETS:
            raise ValueError(f"unknown edit {edit!r}; known: {sorted(EDIT_TARGETS)}")
        start = time.time()
        results[edit] = train_one(edit, g, classifier, config, codes)
        logger.info("%s done in %.0f s: %s", edit, time.time() - start, results[edit])
    return results


def main(argv: Sequence[str] | None = None) -> None:
    log_setup()
    for edit, r in train(parse_config(MapperTrainConfig, argv, __doc__ or "")).items():
        print(edit, " ".join(f"{k}={v:.4g}" for k, v in r.items()))


if __name__ == "__main__":
    main()

"""Train the demo attribute classifier on renderer ground truth (CPU, ~3-4 minutes with one thread).

    python -m tcve.demo.train_classifier --out tcve/demo/weights/classifier.pt

Augmentations (blur, noise, colour jitter, small shifts) make it robust to what the demo generator produces, which
is blurrier than the renderer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .classifier import WEIGHTS, AttributeClassifier, accuracy, frames_to_image, labels_for, save_classifier
from .train_common import Timer, log_setup, parse_config, render_dataset, seed_everything

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassifierTrainConfig:
    out: str = str(WEIGHTS)
    seed: int = 0
    n_train: int = 5000
    n_val: int = 1000
    epochs: int = 24
    batch: int = 64
    lr: float = 3e-3
    width: int = 16
    budget_s: float = 480.0  # stop early when this much wall time has passed (rendering excluded)
    cache_dir: str = "/tmp/tcve-demo-cache"
    threads: int = 1


def augment(image: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random blur (GAN outputs are soft), noise, brightness/contrast and a +-2 px shift, image [B,3,H,W]."""
    b = image.shape[0]
    k = torch.tensor([1.0, 2.0, 1.0])
    k = (k[:, None] * k[None, :] / 16).expand(3, 1, 3, 3)
    blurred = F.conv2d(F.pad(image, (1, 1, 1, 1), mode="replicate"), k, groups=3)
    mix = 0.6 * torch.rand(b, 1, 1, 1, generator=gen)
    image = image + mix * (blurred - image)
    gain = 1 + 0.15 * (torch.rand(b, 1, 1, 1, generator=gen) - 0.5)
    bias = 0.1 * (torch.rand(b, 3, 1, 1, generator=gen) - 0.5)
    image = image * gain + bias + 0.03 * torch.randn(image.shape, generator=gen)
    dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=gen))
    image = torch.roll(image, shifts=(dy, dx), dims=(2, 3))
    return image.clamp(-1, 1)


def train(config: ClassifierTrainConfig) -> dict[str, float]:
    seed_everything(config.seed, config.threads)
    frames, attrs = render_dataset(config.n_train, 64, config.seed, config.cache_dir)
    val_frames, val_attrs = render_dataset(config.n_val, 64, config.seed + 1000, config.cache_dir)
    x, y = frames_to_image(frames), torch.from_numpy(labels_for(attrs))
    xv, yv = frames_to_image(val_frames), labels_for(val_attrs)

    model = AttributeClassifier(width=config.width)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    steps = config.epochs * (len(x) // config.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=steps, pct_start=0.15)
    gen = torch.Generator().manual_seed(config.seed)
    timer = Timer(config.budget_s)
    step = 0
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        losses = []
        for i in range(len(x) // config.batch):
            idx = order[i * config.batch:(i + 1) * config.batch]
            loss = model.loss(model(augment(x[idx], gen)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step < steps - 1:
                sched.step()
            step += 1
            losses.append(loss.item())
        acc = accuracy(model, xv, yv)
        logger.info("epoch %d loss %.4f val %s (%.0f s)", epoch, np.mean(losses),
                    " ".join(f"{k}={v:.3f}" for k, v in acc.items()), timer.elapsed)
        if timer.expired():
            logger.info("time budget reached")
            break
    acc = accuracy(model, xv, yv)
    save_classifier(model, config.out, seed=config.seed, val_accuracy=acc, train_seconds=timer.elapsed)
    return {**acc, "seconds": timer.elapsed}


def main(argv: Sequence[str] | None = None) -> None:
    log_setup()
    result = train(parse_config(ClassifierTrainConfig, argv, __doc__ or ""))
    print(" ".join(f"{k}={v:.3f}" for k, v in result.items()))


if __name__ == "__main__":
    main()

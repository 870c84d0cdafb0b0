"""Train the demo domain's identity embedding (the demo pack's stand-in for ArcFace IR-SE50).

    nice -n 10 python -m tcve.demo.train_identity --out tcve/demo/weights/identity.pt

An identity is what stays fixed for one person across a clip and across the pack's edits: skin tone, hair colour,
hair style and face width (``IDENTITY_FIELDS``). Everything else is drawn afresh for every render of an identity
(pose, expression, eyeglasses, beard, age, backdrop, shirt), so the embedding learns to ignore what the edits and the
motion change. Loss: ArcFace's additive angular margin over the training identities (scale ``s``, margin ``m``).
Measured on held-out identities (new seeds): mean cosine of same-identity pairs vs different-identity pairs and the
verification accuracy at the best threshold, stored in the file and printed.
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

from ..identity import SmallIdentityNet
from .classifier import frames_to_image
from .faces import FaceAttributes, render_face, sample_attributes
from .train_classifier import augment
from .train_common import WEIGHTS_DIR, Timer, log_setup, parse_config, seed_everything

logger = logging.getLogger(__name__)

IDENTITY_FIELDS = ("skin_tone", "hair_color", "hair_style", "face_width")


@dataclass(frozen=True)
class IdentityTrainConfig:
    out: str = str(WEIGHTS_DIR / "identity.pt")
    seed: int = 0
    n_identities: int = 500
    renders_per_identity: int = 8
    n_val_identities: int = 100
    val_renders_per_identity: int = 6
    width: int = 16
    dim: int = 64
    input_size: int = 32  # identity cues (skin, hair, face shape) survive 32 px; 4x cheaper than 64 on a CPU
    epochs: int = 8
    batch: int = 128
    lr: float = 3e-3
    arc_scale: float = 16.0
    arc_margin: float = 0.3
    budget_s: float = 300.0  # training CPU seconds of this process (rendering excluded): the shared machine's wall
    # time depends on the load; the run stops after the epoch in which the budget runs out
    threads: int = 1
    cache_dir: str = "/tmp/tcve-demo-cache"


def identity_renders(n_identities: int, per_identity: int, seed: int,
                     cache_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """frames ``[n*k, 64, 64, 3]`` uint8 and identity labels ``[n*k]``: k renders of each of n sampled people
    (cached as .npy under ``cache_dir`` when given)."""
    path = Path(cache_dir) / f"demo_identities_{n_identities}_{per_identity}_{seed}.npz" if cache_dir else None
    if path is not None and path.exists():
        data = np.load(path)
        return data["frames"], data["labels"]
    rng = np.random.default_rng(seed)
    frames, labels = [], []
    for person in range(n_identities):
        who = sample_attributes(rng)
        fixed = {k: getattr(who, k) for k in IDENTITY_FIELDS}
        for _ in range(per_identity):
            attrs: FaceAttributes = sample_attributes(rng).replace(**fixed)
            frames.append(render_face(attrs, 64))
            labels.append(person)
    out = np.stack(frames), np.array(labels, np.int64)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, frames=out[0], labels=out[1])
    return out


def _resized(images: torch.Tensor, size: int) -> torch.Tensor:
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def arcface_logits(emb: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, scale: float,
                   margin: float) -> torch.Tensor:
    """ArcFace: ``s * cos(theta + m)`` for the true class, ``s * cos(theta)`` for the others (emb normalised)."""
    cos = emb @ F.normalize(weight, dim=1).T
    theta = torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))
    target = torch.cos(theta + margin)
    onehot = F.one_hot(labels, cos.shape[1]).bool()
    return scale * torch.where(onehot, target, cos)


@torch.no_grad()
def separation(net: SmallIdentityNet, images: torch.Tensor, labels: np.ndarray) -> dict[str, float]:
    """Same- vs different-identity cosine statistics and the best-threshold verification accuracy."""
    net.eval()
    emb = torch.cat([net(images[s:s + 256]) for s in range(0, len(images), 256)])
    cos = (emb @ emb.T).numpy()
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(labels), dtype=bool)
    pos, neg = cos[same & off], cos[~same]
    thresholds = np.linspace(-1, 1, 401)
    acc = [0.5 * ((pos > t).mean() + (neg <= t).mean()) for t in thresholds]
    best = int(np.argmax(acc))
    return {"same_cos": float(pos.mean()), "diff_cos": float(neg.mean()), "same_cos_p05": float(np.quantile(pos, 0.05)),
            "diff_cos_p95": float(np.quantile(neg, 0.95)), "verification_acc": float(acc[best]),
            "threshold": float(thresholds[best])}


def train(config: IdentityTrainConfig) -> dict[str, float]:
    seed_everything(config.seed, config.threads)
    frames, labels = identity_renders(config.n_identities, config.renders_per_identity, config.seed, config.cache_dir)
    val_frames, val_labels = identity_renders(config.n_val_identities, config.val_renders_per_identity,
                                              config.seed + 1000, config.cache_dir)
    # resized once to the net's input size, so augmentation and training run at 32 px
    x, y = _resized(frames_to_image(frames), config.input_size), torch.from_numpy(labels)
    xv = _resized(frames_to_image(val_frames), config.input_size)
    net = SmallIdentityNet(width=config.width, dim=config.dim, input_size=config.input_size)
    classes = torch.nn.Parameter(torch.randn(config.n_identities, config.dim) * 0.1)
    opt = torch.optim.AdamW([*net.parameters(), classes], lr=config.lr, weight_decay=5e-4)
    steps_per_epoch = len(x) // config.batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.lr, total_steps=config.epochs * steps_per_epoch,
                                                pct_start=0.15)
    gen = torch.Generator().manual_seed(config.seed)
    cpu0 = time.process_time()
    wall = Timer(config.budget_s)
    stats: dict[str, float] = {}
    for epoch in range(config.epochs):
        net.train()
        order = torch.randperm(len(x), generator=gen)
        losses = []
        for i in range(steps_per_epoch):
            idx = order[i * config.batch:(i + 1) * config.batch]
            logits = arcface_logits(net(augment(x[idx], gen)), classes, y[idx], config.arc_scale, config.arc_margin)
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        stats = separation(net, xv, val_labels)
        cpu = time.process_time() - cpu0
        logger.info("epoch %d loss %.3f held-out %s (%.0f CPU s, %.0f s wall)", epoch, np.mean(losses),
                    " ".join(f"{k}={v:.3f}" for k, v in stats.items()), cpu, wall.elapsed)
        if cpu >= config.budget_s:
            logger.info("time budget reached after epoch %d", epoch)
            break
    cpu = time.process_time() - cpu0
    torch.save(net.to_file_dict(seed=config.seed, identity_fields=list(IDENTITY_FIELDS), held_out=stats,
                                train_cpu_seconds=cpu, epochs_run=epoch + 1), config.out)
    return {**stats, "cpu_seconds": cpu, "wall_seconds": wall.elapsed}


def main(argv: Sequence[str] | None = None) -> None:
    log_setup()
    result = train(parse_config(IdentityTrainConfig, argv, __doc__ or ""))
    print(" ".join(f"{k}={v:.3f}" for k, v in result.items()))


if __name__ == "__main__":
    main()

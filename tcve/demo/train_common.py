"""Shared pieces of the demo-pack training scripts: seeded data rendering (cached), config flags, timing.

Every script is a frozen config dataclass plus a `train(config) -> dict` function and a `main(argv)` that builds
flags from the dataclass fields, so one definition serves both callers and the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from .faces import FaceAttributes, animate_attributes, render_face, sample_attributes

logger = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).with_name("weights")
C = TypeVar("C")


def seed_everything(seed: int, threads: int = 1) -> None:
    """Seeds torch and numpy and pins the thread count (runs must be reproducible and share the CPU politely)."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(threads)


def sample_dataset_attributes(n: int, seed: int, clip_fraction: float = 0.3) -> list[FaceAttributes]:
    """n attribute records: independent samples, plus a share taken from talking-head clips (in-between poses and
    mouths as the demo videos show them)."""
    rng = np.random.default_rng(seed)
    n_clip = int(n * clip_fraction)
    attrs = [sample_attributes(rng) for _ in range(n - n_clip)]
    while len(attrs) < n:
        clip = animate_attributes(48, 25.0, rng)
        attrs.extend(clip[:: 6][: n - len(attrs)])
    order = rng.permutation(n)
    return [attrs[i] for i in order]


def render_dataset(n: int, size: int, seed: int, cache_dir: str | os.PathLike[str] | None = None,
                   clip_fraction: float = 0.3) -> tuple[np.ndarray, list[FaceAttributes]]:
    """frames [n, size, size, 3] uint8 and their attributes; cached as .npy under `cache_dir` when given."""
    attrs = sample_dataset_attributes(n, seed, clip_fraction)
    path = None
    if cache_dir is not None:
        key = hashlib.sha1(repr((n, size, seed, clip_fraction, attrs[:4])).encode()).hexdigest()[:12]
        path = Path(cache_dir) / f"demo_faces_{size}_{n}_{seed}_{key}.npy"
        if path.exists():
            return np.load(path), attrs
    start = time.time()
    frames = np.stack([render_face(a, size) for a in attrs])
    logger.info("rendered %d faces at %d px in %.1f s", n, size, time.time() - start)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, frames)
    return frames, attrs


def attribute_matrix(attrs: Sequence[FaceAttributes], names: Sequence[str]) -> np.ndarray:
    """[N, len(names)] float32 of the named attributes (booleans as 0/1)."""
    return np.array([[float(getattr(a, k)) for k in names] for a in attrs], np.float32)


def parse_config(cls: type[C], argv: Sequence[str] | None, description: str) -> C:
    """A `cls` instance from command-line flags named after its fields (--field-name value)."""
    parser = argparse.ArgumentParser(description=description)
    for f in dataclasses.fields(cls):
        default = f.default
        flag = "--" + f.name.replace("_", "-")
        kind = type(default) if default is not None else str
        if kind is bool:
            parser.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=default,
                                help=f.metadata.get("doc", ""))
        else:
            parser.add_argument(flag, type=kind, default=default, help=f.metadata.get("doc", ""))
    return cls(**vars(parser.parse_args(argv)))


class Timer:
    """Wall-clock budget of a training run."""

    def __init__(self, budget_s: float):
        self.start = time.time()
        self.budget_s = budget_s

    @property
    def elapsed(self) -> float:
        return time.time() - self.start

    def expired(self) -> bool:
        return self.elapsed >= self.budget_s


def log_setup() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")


def as_plain(obj: Any) -> Any:
    """A config dataclass as a plain dict (what the checkpoint files store as 'opts')."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj

"""The demo pack as a model set: the pipeline's networks and edits from the files under ``weights/``.

The catalogue's edits keep their names and checkpoint names; the demo provides the checkpoints it has trained
(`DEMO_EDIT_FILES`) and greys out the rest. Its faces are framed wider than FFHQ crops (`DEMO_FRAMING`), so the
pipeline aligns uploaded clips the way the demo generator was trained.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..edit import EditLoaders
from . import demo_path

# (AlignConfig.quad_scale, quad_shift): the FFHQ quad of a render's landmarks, scaled 1.3x and moved down 0.08
# half-axes, covers the render (median over 500 sampled faces; see tests/test_demo_models.py).
DEMO_FRAMING = (1.30, 0.08)

# catalogue checkpoint name -> (demo file, sign). The catalogue's 'age' is the negated InterFaceGAN 'young'
# boundary, so the demo's 'age' direction (older) is served negated under that name.
DEMO_EDIT_FILES: dict[str, tuple[str, float]] = {
    "mapper-eyeglasses": ("demo-mapper-eyeglasses", 1.0),
    "mapper-angry": ("demo-mapper-angry", 1.0),
    "mapper-surprised": ("demo-mapper-surprised", 1.0),
    "interfacegan-smiling": ("demo-direction-smile", 1.0),
    "interfacegan-young": ("demo-direction-age", -1.0),
    "nada-sketch": ("demo-nada-sketch", 1.0),
}
# What each demo file is, for `list` and the status line (the catalogue's notes describe the FFHQ sources).
DEMO_NOTES: dict[str, str] = {
    "mapper-eyeglasses": "demo-pack mapper 'eyeglasses' (trained on the demo faces)",
    "mapper-angry": "demo-pack mapper 'angry' (trained on the demo faces)",
    "mapper-surprised": "demo-pack mapper 'surprised' (trained on the demo faces)",
    "interfacegan-smiling": "demo-pack direction 'smile' (fitted on the demo faces)",
    "interfacegan-young": "demo-pack direction 'age' (fitted on the demo faces; positive = older)",
    "nada-sketch": "demo-pack style generator 'sketch' (strength blends base -> style weights)",
}
REQUIRED = ("demo-stylegan2-64", "demo-e4e")
# The catalogue's InterFaceGAN strengths (default 3, range +-6) assume unit normals in FFHQ's W, where a step of 3
# crosses an attribute. Demo directions are served scaled so that a strength of 3 moves DIRECTION_STEP_STD standard
# deviations of the training codes along the normal (their spread is in directions.json).
DIRECTION_STEP_STD = 2.0


def demo_pack_available() -> bool:
    """Whether the shipped generator and encoder are present (the edits are optional, each greyed out if missing)."""
    return all(demo_path(name).exists() for name in REQUIRED)


def _direction_scale(file_name: str) -> float:
    path = demo_path(file_name)
    meta_path = path.with_name("directions.json")
    if not meta_path.exists():
        return 1.0
    spread = json.loads(meta_path.read_text()).get(path.stem, {}).get("projection_std")
    return float(spread) * DIRECTION_STEP_STD / 3.0 if spread else 1.0


def demo_edit_loaders(device: torch.device | str = "cpu") -> EditLoaders:
    """Edit networks from the pack, under the catalogue's checkpoint names."""
    from ..models import load_generator, load_mapper

    def available(checkpoint: str) -> bool:
        entry = DEMO_EDIT_FILES.get(checkpoint)
        return entry is not None and demo_path(entry[0]).exists()

    def file_for(checkpoint: str) -> tuple[str, float]:
        if not available(checkpoint):
            from ..errors import CheckpointUnavailable

            raise CheckpointUnavailable(checkpoint, None, checkpoint,
                                        "the demo pack does not provide this edit")
        return DEMO_EDIT_FILES[checkpoint]

    def mapper(checkpoint: str) -> nn.Module:
        return load_mapper(demo_path(file_for(checkpoint)[0])).to(device).eval()

    def direction(checkpoint: str, key: str | None = None) -> torch.Tensor:
        name, sign = file_for(checkpoint)
        normal = np.load(demo_path(name), allow_pickle=False).astype(np.float32).reshape(-1)
        return torch.from_numpy(normal * sign * _direction_scale(name))

    def generator(checkpoint: str) -> nn.Module:
        return load_generator(demo_path(file_for(checkpoint)[0])).to(device).eval()

    return EditLoaders(mapper=mapper, direction=direction, generator=generator, clip=None, is_available=available,
                       note=DEMO_NOTES.get)


@dataclass(frozen=True)
class DemoNetworks:
    generator: nn.Module
    encoder: nn.Module
    edit_loaders: EditLoaders


def load_demo_networks(device: torch.device | str = "cpu") -> DemoNetworks:
    """The demo generator (eval, frozen), its e4e encoder and the edit loaders."""
    from ..errors import CheckpointUnavailable
    from ..models import load_encoder, load_generator

    for name in REQUIRED:
        if not demo_path(name).exists():
            raise CheckpointUnavailable(name, None, str(demo_path(name)), "the demo pack is not trained here: "
                                        "see tcve/demo (python -m tcve.demo.train_*)")
    generator = load_generator(demo_path("demo-stylegan2-64")).to(device).eval().requires_grad_(False)
    encoder = load_encoder(demo_path("demo-e4e")).to(device).eval().requires_grad_(False)
    return DemoNetworks(generator, encoder, demo_edit_loaders(device))

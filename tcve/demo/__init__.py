"""The bundled demo pack: a procedural face domain and small models trained on it, shipped in the repository.

Real FFHQ checkpoints cannot be downloaded everywhere; these demo models (clearly labelled as such) let the app,
the CLI and the tests run the whole pipeline offline on the same code paths and file layouts as the real ones.

- `faces`: the renderer (`FaceAttributes`, `render_face`, `sample_attributes`, `animate_clip`, `landmarks_for`).
- `classifier`: the attribute classifier that judges renders and generator outputs (`load_classifier`).
- `train_*`: seeded, time-bounded CPU scripts that reproduce every file under `weights/` (see `DEMO_FILES`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .faces import FaceAttributes, animate_clip, landmarks_for, render_face, sample_attributes

WEIGHTS_DIR = Path(__file__).with_name("weights")


@dataclass(frozen=True)
class DemoFile:
    """One shipped file: registry-style name, path under weights/, checkpoint format, and the script that makes it."""

    name: str
    path: str
    format: str
    script: str


DEMO_FILES: tuple[DemoFile, ...] = (
    DemoFile("demo-classifier", "classifier.pt", "demo-classifier", "tcve.demo.train_classifier"),
    DemoFile("demo-stylegan2-64", "generator.pt", "rosinality", "tcve.demo.train_generator"),
    DemoFile("demo-e4e", "encoder_e4e.pt", "psp", "tcve.demo.train_encoder"),
    DemoFile("demo-mapper-eyeglasses", "mappers/eyeglasses.pt", "styleclip-mapper", "tcve.demo.train_mappers"),
    DemoFile("demo-mapper-angry", "mappers/angry.pt", "styleclip-mapper", "tcve.demo.train_mappers"),
    DemoFile("demo-mapper-surprised", "mappers/surprised.pt", "styleclip-mapper", "tcve.demo.train_mappers"),
    DemoFile("demo-direction-smile", "directions/smile.npy", "direction", "tcve.demo.train_directions"),
    DemoFile("demo-direction-age", "directions/age.npy", "direction", "tcve.demo.train_directions"),
    DemoFile("demo-nada-sketch", "generator_sketch.pt", "rosinality", "tcve.demo.train_style"),
    DemoFile("demo-identity", "identity.pt", "demo-identity", "tcve.demo.train_identity"),
)


def demo_path(name: str) -> Path:
    """Path of a shipped demo file by its name (it may not exist yet where training has not been run)."""
    for f in DEMO_FILES:
        if f.name == name:
            return WEIGHTS_DIR / f.path
    raise KeyError(f"unknown demo file {name!r}; known: {[f.name for f in DEMO_FILES]}")


__all__ = ["DEMO_FILES", "WEIGHTS_DIR", "DemoFile", "FaceAttributes", "animate_clip", "demo_path", "landmarks_for",
           "render_face", "sample_attributes"]

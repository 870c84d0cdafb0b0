"""Ground-truth edited clips of the demo domain: one talking clip rendered with and without an attribute.

The renderer draws every frame from its attributes, so changing one attribute in every frame (eyeglasses on, brows
angry or raised, a smile, age) and rendering again gives the *true* edited video: same person, same head motion,
mouth, blinks and expression changes, only the attribute differs. For the out-of-domain "sketch" style the truth is
the ink-sketch filter the demo's style generator was fitted to (``train_style.ink_sketch``), applied to the aligned
crops of the unedited clip.

Clips have more motion than ``faces.animate_clip`` alone: a head turn across the clip, one expression change (a smile
that comes and goes, the brows raised once) and at least one blink, on top of the talking mouth, so that a method
which flattens motion is farther from the truth. Each face is drawn at ``face_size`` and padded with its own
backdrop to ``frame_size`` (like ``examples/make_demo_clips.py``), so pasting back into the full frame matters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from .faces import FaceAttributes, animate_attributes, landmarks_for, render_face, sample_attributes

# catalogue edit name -> the attribute change that is its ground truth (applied to every frame, then clipped)
ATTRIBUTE_EDITS: dict[str, Callable[[FaceAttributes], FaceAttributes]] = {
    "eyeglasses": lambda a: a.replace(eyeglasses=True),
    "angry": lambda a: a.replace(brows=a.brows - 1.0),
    "surprised": lambda a: a.replace(brows=a.brows + 0.8),
    "smile": lambda a: a.replace(smile=a.smile + 0.8),
    "age": lambda a: a.replace(age=a.age + 0.7),
}
STYLE_EDITS = ("sketch",)  # ground truth: ink_sketch of the unedited aligned crop
GT_EDITS = (*ATTRIBUTE_EDITS, *STYLE_EDITS)


@dataclass(frozen=True)
class ClipSpec:
    """One seeded ground-truth clip. 2 s at 10 fps by default: blinks last one or two frames, the head turns."""

    seed: int
    n_frames: int = 20
    fps: float = 10.0
    face_size: int = 128  # render size (tcve.demo.faces.SIZES)
    frame_size: int = 160  # full frame: the render padded with its own backdrop

    @property
    def name(self) -> str:
        return f"gt-{self.seed}"


@dataclass(frozen=True)
class GroundTruthClip:
    """The unedited clip: full frames [T,H,W,3] uint8, each frame's attributes, FFHQ landmarks [T,4,2] in frames."""

    spec: ClipSpec
    frames: np.ndarray
    attributes: tuple[FaceAttributes, ...]
    landmarks: np.ndarray

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class GroundTruthPair:
    """A clip and its true edit. Attribute edits: ``edited_frames`` / ``edited_attributes`` (full frames, rendered).
    Styles: ``crop_style`` maps an aligned crop [S,S,3] uint8 to its true stylised crop (no full-frame render)."""

    clip: GroundTruthClip
    edit: str
    domain: str  # "in" | "out"
    edited_frames: np.ndarray | None = None
    edited_attributes: tuple[FaceAttributes, ...] | None = None
    crop_style: Callable[[np.ndarray], np.ndarray] | None = None


def _bump(t: np.ndarray, centre: float, half_width: float) -> np.ndarray:
    """Smooth 0..1..0 bump (raised cosine) of the given half width, centred at ``centre``."""
    x = np.clip(np.abs(t - centre) / half_width, 0, 1)
    return 0.5 * (1 + np.cos(np.pi * x))


def source_identity(rng: np.random.Generator) -> FaceAttributes:
    """A random person without the attributes the edits add: no eyeglasses, young, neutral brows, not smiling."""
    base = sample_attributes(rng)
    return base.replace(eyeglasses=False, age=float(rng.uniform(0.05, 0.3)), smile=float(rng.uniform(-0.2, 0.1)),
                        brows=0.0, yaw=0.0, roll=float(rng.uniform(-0.1, 0.1)), center_x=0.0, center_y=0.0,
                        scale=float(rng.uniform(0.92, 1.02)))


def talking_attributes(spec: ClipSpec) -> list[FaceAttributes]:
    """Per-frame attributes: ``animate_attributes`` (talking mouth, head sway, gaze) plus a head turn across the clip,
    a smile event, a brow raise, a blink and syllables the frame rate resolves (so every kind of motion is present,
    whatever the frame rate)."""
    rng = np.random.default_rng(spec.seed)
    identity = source_identity(rng)
    attrs = animate_attributes(spec.n_frames, spec.fps, rng, identity)
    n = spec.n_frames
    duration = n / spec.fps
    t = np.arange(n) / spec.fps
    turn = 0.3 * np.sin(2 * np.pi * t / duration + rng.uniform(0, 2 * np.pi))
    smile = 0.6 * _bump(t, rng.uniform(0.25, 0.75) * duration, 0.3 * duration)
    brows = 0.3 * _bump(t, rng.uniform(0.2, 0.8) * duration, 0.15 * duration)
    blink = _bump(t, rng.uniform(0.3, 0.7) * duration, max(1.5 / spec.fps, 0.1))
    # syllables at a rate the frame rate resolves (at most 4 Hz, at least 4 frames per open-close), all clip long
    rate = min(4.0, spec.fps / 4)
    talk = 0.65 * np.clip(np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)), 0, None)
    return [a.replace(yaw=a.yaw + turn[i], smile=a.smile + smile[i], brows=a.brows + brows[i],
                      blink=max(a.blink, blink[i]), mouth_open=max(a.mouth_open, talk[i])).clipped()
            for i, a in enumerate(attrs)]


def _frame(attrs: FaceAttributes, spec: ClipSpec) -> np.ndarray:
    face = render_face(attrs, spec.face_size)
    pad = (spec.frame_size - spec.face_size) // 2
    return cv2.copyMakeBorder(face, pad, spec.frame_size - spec.face_size - pad, pad,
                              spec.frame_size - spec.face_size - pad, cv2.BORDER_REPLICATE)


def render_frames(attributes: tuple[FaceAttributes, ...] | list[FaceAttributes], spec: ClipSpec) -> np.ndarray:
    """Full frames [T, frame_size, frame_size, 3] uint8 of the given per-frame attributes."""
    return np.stack([_frame(a, spec) for a in attributes])


def make_clip(spec: ClipSpec) -> GroundTruthClip:
    """The unedited clip of ``spec`` (deterministic in ``spec``)."""
    if spec.frame_size < spec.face_size:
        raise ValueError(f"frame_size {spec.frame_size} is smaller than face_size {spec.face_size}")
    if spec.n_frames < 2:
        raise ValueError(f"a clip needs at least 2 frames, got {spec.n_frames}")
    attrs = tuple(talking_attributes(spec))
    pad = (spec.frame_size - spec.face_size) // 2
    landmarks = np.stack([landmarks_for(a, spec.face_size) + pad for a in attrs])
    return GroundTruthClip(spec, render_frames(attrs, spec), attrs, landmarks)


def make_pair(clip: GroundTruthClip, edit: str) -> GroundTruthPair:
    """``clip`` with its true ``edit`` (one of ``GT_EDITS``)."""
    if edit in ATTRIBUTE_EDITS:
        change = ATTRIBUTE_EDITS[edit]
        edited = tuple(change(a).clipped() for a in clip.attributes)
        return GroundTruthPair(clip, edit, "in", render_frames(edited, clip.spec), edited)
    if edit in STYLE_EDITS:
        from .train_style import ink_sketch  # imports torch and the generator code: only when a style is asked for

        return GroundTruthPair(clip, edit, "out", crop_style=ink_sketch)
    raise KeyError(f"no ground truth for edit {edit!r}; known: {', '.join(GT_EDITS)}")


__all__ = ["ATTRIBUTE_EDITS", "GT_EDITS", "STYLE_EDITS", "ClipSpec", "GroundTruthClip", "GroundTruthPair",
           "make_clip", "make_pair", "render_frames", "source_identity", "talking_attributes"]

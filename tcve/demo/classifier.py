"""Attribute classifier of the demo face domain: a small CNN trained on renderer ground truth.

It is the demo pack's judge: it checks that the demo generator draws recognisable faces, that the eyeglasses mapper
adds glasses, that the expression mappers change the brows, and so on. Every attribute is a small categorical head;
continuous renderer attributes are thresholded with a dead band (values inside it are not trained on), so labels
are unambiguous.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .faces import FaceAttributes

logger = logging.getLogger(__name__)

IGNORE = -100  # label of values inside a dead band (torch cross-entropy ignore_index)
INPUT_SIZE = 64
WEIGHTS = Path(__file__).with_name("weights") / "classifier.pt"


@dataclass(frozen=True)
class AttributeHead:
    """One classifier head. `attribute` is a FaceAttributes field; `bands` split its value into classes.

    For n classes there are n-1 (low, high) bands: class k ends at band k's `low`, class k+1 starts at its `high`,
    and values in between are ignored. Boolean attributes have no bands.
    """

    name: str
    attribute: str
    classes: tuple[str, ...]
    bands: tuple[tuple[float, float], ...] = ()

    def label(self, attrs: FaceAttributes) -> int:
        value = getattr(attrs, self.attribute)
        if not self.bands:
            return int(bool(value))
        for k, (low, high) in enumerate(self.bands):
            if value <= low:
                return k
            if value < high:
                return IGNORE
        return len(self.bands)


HEADS: tuple[AttributeHead, ...] = (
    AttributeHead("eyeglasses", "eyeglasses", ("no", "yes")),
    AttributeHead("beard", "beard", ("no", "yes")),
    AttributeHead("mouth_open", "mouth_open", ("no", "yes"), ((0.2, 0.3),)),
    AttributeHead("smile", "smile", ("no", "yes"), ((0.25, 0.5),)),
    AttributeHead("blink", "blink", ("no", "yes"), ((0.3, 0.6),)),
    AttributeHead("old", "age", ("no", "yes"), ((0.4, 0.6),)),
    AttributeHead("brows", "brows", ("angry", "neutral", "surprised"), ((-0.5, -0.25), (0.25, 0.5))),
)


def head(name: str) -> AttributeHead:
    for h in HEADS:
        if h.name == name:
            return h
    raise KeyError(f"unknown classifier head {name!r}; heads: {[h.name for h in HEADS]}")


def labels_for(attrs: Sequence[FaceAttributes]) -> np.ndarray:
    """Class indices [N, len(HEADS)] int64 (IGNORE inside dead bands)."""
    return np.array([[h.label(a) for h in HEADS] for a in attrs], dtype=np.int64).reshape(len(attrs), len(HEADS))


class AttributeClassifier(nn.Module):
    """image [B,3,H,W] in [-1,1] (resized to 64x64 inside) -> logits [B, sum of head classes]."""

    def __init__(self, width: int = 16):
        super().__init__()
        w = width

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                                 nn.ReLU(inplace=True))

        self.width = width
        # a full-resolution stem: mouth corners and eyelids are only a pixel or two at 64 px
        self.features = nn.Sequential(
            block(3, w, 1),
            nn.Sequential(block(w, w * 3 // 2, 2), block(w * 3 // 2, w * 3 // 2, 1)),  # 32 px
            nn.Sequential(block(w * 3 // 2, 2 * w, 2), block(2 * w, 2 * w, 1)),  # 16 px
            block(2 * w, 3 * w, 2),  # 8 px
            block(3 * w, 4 * w, 2),  # 4 px
        )
        # the flattened 4x4 map keeps where things are (glasses high, mouth low)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * 16, 128), nn.ReLU(inplace=True),
                                  nn.Linear(128, sum(len(h.classes) for h in HEADS)))
        self.slices = []
        start = 0
        for h in HEADS:
            self.slices.append(slice(start, start + len(h.classes)))
            start += len(h.classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be [B,3,H,W], got {tuple(image.shape)}")
        if image.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            image = F.interpolate(image, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True,
                                  align_corners=False)
        return self.head(self.features(image))

    def split(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """logits [B, total] -> {head name: logits [B, n_classes]}."""
        return {h.name: logits[:, s] for h, s in zip(HEADS, self.slices)}

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over heads; labels [B, len(HEADS)] with IGNORE where undefined."""
        total = logits.new_zeros(())
        for i, (name, lg) in enumerate(self.split(logits).items()):
            y = labels[:, i]
            if (y != IGNORE).any():
                total = total + F.cross_entropy(lg, y, ignore_index=IGNORE)
        return total / len(HEADS)

    @torch.no_grad()
    def probabilities(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """{'eyeglasses': P(yes) [B], ..., 'angry': P(angry brows), 'surprised': ..., 'neutral': ...}."""
        out = {}
        for h, lg in zip(HEADS, self.split(self(image)).values()):
            p = lg.softmax(-1)
            if h.classes == ("no", "yes"):
                out[h.name] = p[:, 1]
            else:
                out.update({c: p[:, k] for k, c in enumerate(h.classes)})
        return out

    @torch.no_grad()
    def predict(self, image: torch.Tensor) -> torch.Tensor:
        """Predicted class per head [B, len(HEADS)] int64 (same layout as `labels_for`)."""
        return torch.stack([lg.argmax(-1) for lg in self.split(self(image)).values()], 1)


def frames_to_image(frames: np.ndarray) -> torch.Tensor:
    """frames [N,H,W,3] uint8 -> image [N,3,H,W] float in [-1,1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def accuracy(model: AttributeClassifier, image: torch.Tensor, labels: np.ndarray | torch.Tensor) -> dict[str, float]:
    """Per-head accuracy over samples whose label is defined."""
    model.eval()
    pred = model.predict(image).numpy()
    labels = np.asarray(labels)
    out = {}
    for i, h in enumerate(HEADS):
        keep = labels[:, i] != IGNORE
        out[h.name] = float((pred[keep, i] == labels[keep, i]).mean()) if keep.any() else float("nan")
    return out


def save_classifier(model: AttributeClassifier, path: str | os.PathLike[str], **meta: object) -> None:
    torch.save({"state_dict": model.state_dict(), "width": model.width, "heads": [h.name for h in HEADS], **meta}, path)


def load_classifier(path: str | os.PathLike[str] | None = None) -> AttributeClassifier:
    """The shipped classifier (or one saved by `save_classifier`), eval mode, float32."""
    from ..models.serialization import load_torch_file  # the tcve.models package is only needed for loading

    obj = load_torch_file(path or WEIGHTS)
    heads = list(obj.get("heads", []))
    if heads != [h.name for h in HEADS]:
        raise ValueError(f"classifier file has heads {heads}, this code expects {[h.name for h in HEADS]}")
    model = AttributeClassifier(width=int(obj["width"]))
    model.load_state_dict(obj["state_dict"])
    return model.eval().float()

"""Identity metrics of an edited video: TL-ID, TG-ID (Stitch-it-in-Time, Tzaban et al. 2022) and ID similarity.

From L2-normalised face embeddings ``e`` of the edited frames and ``s`` of the source frames (``[T,D]``), the
element-wise ratio ``R = (e e^T) / (s s^T)`` compares how similar two frames of the edit are with how similar the
same two frames of the input are (1.0 = the edit keeps the person as consistently as the input does):

- **TL-ID** (temporally local) = mean of ``R[t, t+1]`` over consecutive frames;
- **TG-ID** (temporally global) = mean of ``R[i, j]`` over all ordered pairs ``i != j``;
- **ID-sim** = mean cosine of ``e_t`` with ``s_t`` (how much the edit keeps the source's identity).

STIT's released code has no metric script; these follow its paper's definition (pairs of all frames for TG-ID,
not pairs with the first frame). Values above 1 mean the edit is *more* self-similar than the input.

Embedding networks (``load_identity_net`` reads either file):

- ``ArcFaceIRSE50``: the IR-SE50 ArcFace of pSp / e4e / PTI / STIT's identity loss (registry ``arcface-ir-se50``,
  ``matbee/model_ir_se50_pytorch``), with pSp's preprocessing: the aligned crop pooled to 256, the central
  ``[35:223, 32:220]`` window, pooled to 112;
- ``SmallIdentityNet``: the demo domain's identity embedding (``tcve/demo/weights/identity.pt``, trained by
  ``python -m tcve.demo.train_identity`` with an ArcFace loss over rendered identities).

Public API (stable): ``IdentityScores``, ``identity_scores(edited_emb, source_emb)``, ``tl_id``, ``tg_id``,
``id_similarity``, ``similarity_ratio``, ``embed(net, images)``, ``identity_metrics(net, edited, source)``,
``load_identity_net(path_or_state)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import CheckpointFormatError
from .models.irse import IRSEBackbone

__all__ = [
    "IdentityScores",
    "similarity_ratio",
    "tl_id",
    "tg_id",
    "id_similarity",
    "identity_scores",
    "embed",
    "identity_metrics",
    "ArcFaceIRSE50",
    "SmallIdentityNet",
    "load_identity_net",
    "arcface_preprocess",
]


# ---------------------------------------------------------------------------------------------------------------------
# the metrics (on embeddings)


@dataclass(frozen=True)
class IdentityScores:
    """tl_id, tg_id (1.0 = as consistent as the input), id_sim (mean cosine to the source), network that embedded."""

    tl_id: float
    tg_id: float
    id_sim: float
    network: str = ""

    def as_dict(self) -> dict[str, float | str]:
        return {"tl_id": self.tl_id, "tg_id": self.tg_id, "id_sim": self.id_sim, "identity_network": self.network}


def _normalised_pair(edited: torch.Tensor, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if edited.dim() != 2 or edited.shape != source.shape:
        raise ValueError(f"embeddings must be two [T,D] tensors of equal shape, got {tuple(edited.shape)} "
                         f"and {tuple(source.shape)}")
    return F.normalize(edited.double(), dim=1), F.normalize(source.double(), dim=1)


def similarity_ratio(edited: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """``R = (e e^T) / (s s^T)`` element-wise, ``[T,T]`` float64 (embeddings are L2-normalised here)."""
    e, s = _normalised_pair(edited, source)
    return (e @ e.T) / (s @ s.T)


def tl_id(edited: torch.Tensor, source: torch.Tensor) -> float:
    """Mean of ``R[t, t+1]``; NaN for fewer than two frames."""
    if edited.shape[0] < 2:
        return math.nan
    r = similarity_ratio(edited, source)
    return float(torch.diagonal(r, offset=1).mean())


def tg_id(edited: torch.Tensor, source: torch.Tensor) -> float:
    """Mean of ``R[i, j]`` over all pairs ``i != j``; NaN for fewer than two frames."""
    t = edited.shape[0]
    if t < 2:
        return math.nan
    r = similarity_ratio(edited, source)
    off = ~torch.eye(t, dtype=torch.bool)
    return float(r[off].mean())


def id_similarity(edited: torch.Tensor, source: torch.Tensor) -> float:
    """Mean over t of ``cos(e_t, s_t)``."""
    e, s = _normalised_pair(edited, source)
    return float((e * s).sum(1).mean())


def identity_scores(edited: torch.Tensor, source: torch.Tensor, network: str = "") -> IdentityScores:
    """All three scores from embeddings ``[T,D]`` of the edited and the source frames."""
    return IdentityScores(tl_id(edited, source), tg_id(edited, source), id_similarity(edited, source), network)


# ---------------------------------------------------------------------------------------------------------------------
# embedding networks


def arcface_preprocess(images: torch.Tensor) -> torch.Tensor:
    """pSp's ID-loss input: ``[B,3,H,W]`` aligned crops in [-1,1] -> ``[B,3,112,112]``.

    Pooled to 256 (adaptive average, as pSp does for other sizes), the central face window ``[35:223, 32:220]``,
    then adaptive-average pooled to 112 (pSp's ``face_pool``).
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B,3,H,W], got {tuple(images.shape)}")
    if images.shape[-2:] != (256, 256):
        images = F.adaptive_avg_pool2d(images, (256, 256))
    return F.adaptive_avg_pool2d(images[:, :, 35:223, 32:220], (112, 112))


class ArcFaceIRSE50(IRSEBackbone):
    """pSp's ``Backbone(input_size=112, num_layers=50, mode='ir_se')``: the IR-SE50 body and its 112-px output layer
    (BN2d, dropout, flatten, Linear(512*7*7, 512), BN1d), state-dict names as in ``model_ir_se50.pth``.

    forward(images ``[B,3,H,W]`` aligned crops in [-1,1]) -> L2-normalised ``[B,512]`` (preprocessing included).
    """

    network_name = "ArcFace IR-SE50 (pSp/e4e ID loss)"

    def __init__(self, num_layers: int = 50, drop_ratio: float = 0.6) -> None:
        super().__init__(input_nc=3, num_layers=num_layers, use_se=True)
        self.output_layer = nn.Sequential(nn.BatchNorm2d(512), nn.Dropout(drop_ratio), nn.Flatten(),
                                          nn.Linear(512 * 7 * 7, 512), nn.BatchNorm1d(512, affine=True))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.body(self.input_layer(arcface_preprocess(images)))
        return F.normalize(self.output_layer(x), dim=1)


class SmallIdentityNet(nn.Module):
    """A small CNN face embedding for the demo domain: ``[B,3,H,W]`` in [-1,1] (resized to ``input_size``) ->
    L2-normalised ``[B,dim]``. Saved as ``{'kind': 'demo-identity', 'opts': {...}, 'state_dict': ...}``."""

    network_name = "demo identity net (ArcFace loss on rendered identities)"

    def __init__(self, width: int = 24, dim: int = 64, input_size: int = 64) -> None:
        super().__init__()
        self.opts = {"width": int(width), "dim": int(dim), "input_size": int(input_size)}
        w = width

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                                 nn.PReLU(cout))

        self.features = nn.Sequential(
            block(3, w, 1), block(w, w, 2),            # 32 px
            block(w, 2 * w, 1), block(2 * w, 2 * w, 2),  # 16 px
            block(2 * w, 3 * w, 2),                      # 8 px
            block(3 * w, 4 * w, 2),                      # 4 px
        )
        self.embedding = nn.Sequential(nn.Flatten(), nn.Linear(4 * w * 16, dim), nn.BatchNorm1d(dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B,3,H,W], got {tuple(images.shape)}")
        size = self.opts["input_size"]
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return F.normalize(self.embedding(self.features(images)), dim=1)

    def to_file_dict(self, **meta: Any) -> dict[str, Any]:
        return {"kind": "demo-identity", "opts": dict(self.opts), "state_dict": self.state_dict(), **meta}


def load_identity_net(path_or_state: Any) -> nn.Module:
    """An identity embedding network from a file (or its loaded dict), eval mode, frozen, float32.

    Reads pSp's ``model_ir_se50.pth`` (a bare state dict with ``input_layer.*``, ``body.*``, ``output_layer.*``;
    loaded strictly) and tcve's demo identity files (``kind == 'demo-identity'``).
    """
    from .models.serialization import as_state

    obj = as_state(path_or_state)
    if not isinstance(obj, Mapping):
        raise CheckpointFormatError(f"not an identity network file: got {type(obj).__name__}")
    if obj.get("kind") == "demo-identity":
        net: nn.Module = SmallIdentityNet(**{k: int(v) for k, v in dict(obj["opts"]).items()})
        state = obj["state_dict"]
    elif "output_layer.3.weight" in obj and "input_layer.0.weight" in obj:
        units = sum(1 for k in obj if k.startswith("body.") and k.endswith(".res_layer.1.weight"))
        if units != 24:
            raise CheckpointFormatError(f"IR-SE ArcFace file with {units} units; only IR-SE50 (24) is supported")
        net, state = ArcFaceIRSE50(), obj
    else:
        raise CheckpointFormatError("not an identity network file: expected pSp's model_ir_se50.pth "
                                    "(input_layer/body/output_layer keys) or a tcve demo identity file")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointFormatError(f"identity network weights do not fit: {str(exc).splitlines()[0]}") from exc
    return net.float().eval().requires_grad_(False)


@torch.no_grad()
def embed(net: nn.Module, images: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """Embeddings ``[T,D]`` (float32, CPU) of images ``[T,3,H,W]`` in [-1,1], in batches on the net's device."""
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    try:
        out = [net(images[s:s + batch].to(device, torch.float32)).float().cpu() for s in range(0, len(images), batch)]
    finally:
        net.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)


def identity_metrics(net: nn.Module, edited: torch.Tensor, source: torch.Tensor, batch: int = 16) -> IdentityScores:
    """TL-ID, TG-ID and ID-sim of an edited clip against its source, both ``[T,3,H,W]`` aligned crops in [-1,1]."""
    if edited.shape[0] != source.shape[0]:
        raise ValueError(f"edited and source need the same frame count, got {edited.shape[0]} and {source.shape[0]}")
    name = getattr(net, "network_name", type(net).__name__)
    return identity_scores(embed(net, edited, batch), embed(net, source, batch), name)

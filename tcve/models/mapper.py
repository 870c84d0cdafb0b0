"""StyleCLIP latent mapper (``LevelsMapper``), loading the authors' ``{'state_dict': {'mapper.*', ...}, 'opts'}`` files.

Matches orpatashnik/StyleCLIP ``mapper/latent_mappers.py``: W+ rows split into coarse (0-3), medium (4-7) and fine
(8-) groups, each mapped by PixelNorm + 4 x EqualLinear(512, 512, lr_mul=0.01, fused leaky ReLU); a disabled group
outputs zeros. Two upstream quirks are kept so trained weights behave as trained:

- PixelNorm normalises over dim 1 of the [B, rows, 512] group, i.e. across the rows, per channel.
- The fused bias + leaky ReLU adds the bias on the last (channel) dimension and also follows the last layer.

State-dict names keep upstream's spelling ``course_mapping`` (sic) for the coarse group.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointFormatError
from .layers import LRELU_GAIN, LRELU_SLOPE, PixelNorm
from .serialization import as_state, options_dict, strip_prefix

logger = logging.getLogger(__name__)

COARSE_END, MEDIUM_END = 4, 8
GROUPS = (("course_mapping", "no_coarse"), ("medium_mapping", "no_medium"), ("fine_mapping", "no_fine"))


class MapperLinear(nn.Module):
    """EqualLinear(lr_mul) + bias + leaky ReLU(0.2) * sqrt(2), acting on the last dim. [..., in] -> [..., out]."""

    def __init__(self, in_dim: int, out_dim: int, lr_mul: float = 0.01):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight * self.scale) + self.bias * self.lr_mul
        return F.leaky_relu(out, LRELU_SLOPE) * LRELU_GAIN

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, lr_mul={self.lr_mul}"


class GroupMapper(nn.Module):
    """``mapping`` = Sequential(PixelNorm over rows, 4 x MapperLinear). [B, rows, style_dim] -> same shape."""

    def __init__(self, style_dim: int = 512, n_layers: int = 4):
        super().__init__()
        self.mapping = nn.Sequential(PixelNorm(), *(MapperLinear(style_dim, style_dim) for _ in range(n_layers)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mapping(x)


class LevelsMapper(nn.Module):
    """StyleCLIP latent mapper. ``forward(w_plus [B,n_latent,style_dim]) -> delta`` of the same shape.

    The raw mapper output; the caller applies the edit strength (w_edit = w + strength * delta).
    """

    def __init__(self, no_coarse: bool = False, no_medium: bool = False, no_fine: bool = False,
                 n_latent: int = 18, style_dim: int = 512):
        super().__init__()
        self.no_coarse, self.no_medium, self.no_fine = no_coarse, no_medium, no_fine
        self.n_latent, self.style_dim = n_latent, style_dim
        if not no_coarse:
            self.course_mapping = GroupMapper(style_dim)
        if not no_medium:
            self.medium_mapping = GroupMapper(style_dim)
        if not no_fine:
            self.fine_mapping = GroupMapper(style_dim)

    def extra_repr(self) -> str:
        return f"no_coarse={self.no_coarse}, no_medium={self.no_medium}, no_fine={self.no_fine}"

    def forward(self, w_plus: torch.Tensor) -> torch.Tensor:
        if w_plus.ndim != 3 or w_plus.shape[1] <= MEDIUM_END or w_plus.shape[2] != self.style_dim:
            raise ValueError(
                f"Expected w_plus [B, n_latent > {MEDIUM_END}, {self.style_dim}], got {tuple(w_plus.shape)}")
        parts = (w_plus[:, :COARSE_END], w_plus[:, COARSE_END:MEDIUM_END], w_plus[:, MEDIUM_END:])
        out = []
        for (name, flag), part in zip(GROUPS, parts):
            out.append(torch.zeros_like(part) if getattr(self, flag) else getattr(self, name)(part))
        return torch.cat(out, dim=1)


def load_mapper(path_or_state: Any) -> LevelsMapper:
    """LevelsMapper from a StyleCLIP mapper file (or its loaded dict, or a bare ``mapper.*``-less state dict).

    Disabled groups come from ``opts`` (``no_coarse_mapper`` / ``no_medium_mapper`` / ``no_fine_mapper``) and must
    agree with the stored weights; without opts they are inferred from which groups have weights.
    """
    obj = as_state(path_or_state)
    if not isinstance(obj, Mapping):
        raise CheckpointFormatError(f"Not a StyleCLIP mapper file: got {type(obj).__name__}, expected a dict.")
    sd = obj.get("state_dict", obj)
    if not isinstance(sd, Mapping):
        raise CheckpointFormatError("Not a StyleCLIP mapper file: 'state_dict' is not a dict.")
    msd = strip_prefix(sd, "mapper.") or {k: v for k, v in sd.items() if k.split(".")[0] in dict(GROUPS)}
    present = {name: any(k.startswith(name + ".") for k in msd) for name, _ in GROUPS}
    if not any(present.values()):
        raise CheckpointFormatError(
            "Not a StyleCLIP LevelsMapper file: no 'mapper.course_mapping.*', 'mapper.medium_mapping.*' or "
            "'mapper.fine_mapping.*' weights.")
    opts = options_dict(obj.get("opts")) if "opts" in obj else {}
    mapper_type = opts.get("mapper_type", "LevelsMapper")
    if mapper_type != "LevelsMapper":
        raise CheckpointFormatError(f"Mapper type {mapper_type!r} is not supported (only LevelsMapper).")
    flags = {}
    for name, flag in GROUPS:
        disabled = bool(opts.get(f"{flag}_mapper", not present[name]))
        if disabled == present[name]:
            raise CheckpointFormatError(
                f"Mapper opts say {flag}_mapper={disabled} but the file {'has' if present[name] else 'lacks'} "
                f"'{name}' weights.")
        flags[flag] = disabled
    first = next(k for k in msd if k.endswith("mapping.1.weight"))
    mapper = LevelsMapper(**flags, style_dim=int(msd[first].shape[1]))
    try:
        mapper.load_state_dict({k: v.float() for k, v in msd.items()}, strict=True)
    except RuntimeError as exc:
        raise CheckpointFormatError(f"Mapper weights do not match a LevelsMapper: {str(exc).splitlines()[0]}") from exc
    logger.info("Loaded LevelsMapper (%s)", mapper.extra_repr())
    return mapper.eval().float()

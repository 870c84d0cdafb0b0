"""StyleGAN2 generator (Karras et al. 2020, config-f), state-dict compatible with rosinality/stylegan2-pytorch.

Parameter and buffer names equal those of rosinality's ``model.Generator`` so the ``g_ema`` state dicts that
e4e, ReStyle, StyleCLIP, StyleGAN-NADA and STIT publish load with ``strict=True``. NVlabs network pickles are
converted by ``tcve.models.nvlabs``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointFormatError
from .layers import ConstantInput, EqualLinear, PixelNorm, StyledConv, ToRGB
from .serialization import strip_prefix

logger = logging.getLogger(__name__)

NOISE_MODES = ("const", "random", "none")
INPUT_KINDS = ("z", "w", "w_plus")


def rosinality_channels(channel_multiplier: int = 2, channel_max: int | None = None) -> dict[int, int]:
    """Feature maps per resolution, as rosinality's Generator (optionally capped at ``channel_max``)."""
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
             256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    if channel_max is not None:
        table = {r: min(c, channel_max) for r, c in table.items()}
    return table


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything needed to rebuild a Generator (also what ``infer_config`` reads from a state dict)."""

    size: int
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    lr_mlp: float = 0.01
    channels: tuple[tuple[int, int], ...] | None = None  # explicit (resolution, channels) pairs, overrides the table
    conv_clamp: float | None = None

    def build(self) -> "Generator":
        return Generator(self.size, self.style_dim, self.n_mlp, self.channel_multiplier, lr_mlp=self.lr_mlp,
                         channels=dict(self.channels) if self.channels else None, conv_clamp=self.conv_clamp)


class Generator(nn.Module):
    """Mapping (PixelNorm + n_mlp EqualLinear) and synthesis (const 4x4 -> size x size, skip architecture).

    ``channel_max`` caps rosinality's channel table (small test models); ``channels`` replaces it entirely.
    ``conv_clamp`` clamps every conv / to_rgb output to +-value (NVlabs models trained with conv_clamp).
    ``latent_avg`` [style_dim] is a non-persistent buffer so the state dict keeps rosinality's exact keys.
    """

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1), lr_mlp: float = 0.01, channel_max: int | None = None,
                 channels: Mapping[int, int] | None = None, conv_clamp: float | None = None):
        super().__init__()
        log_size = int(math.log2(size))
        if size < 4 or 2 ** log_size != size:
            raise ValueError(f"size must be a power of two >= 4, got {size}")
        self.size, self.style_dim, self.n_mlp = size, style_dim, n_mlp
        self.channel_multiplier, self.lr_mlp, self.conv_clamp = channel_multiplier, lr_mlp, conv_clamp
        self.log_size = log_size
        table = rosinality_channels(channel_multiplier, channel_max)
        if channels is not None:
            table = {**table, **{int(r): int(c) for r, c in channels.items()}}
        self.channels = {2 ** i: table[2 ** i] for i in range(2, log_size + 1)}

        self.style = nn.Sequential(
            PixelNorm(), *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu")
                           for _ in range(n_mlp)])

        c4 = self.channels[4]
        self.input = ConstantInput(c4)
        self.conv1 = StyledConv(c4, c4, 3, style_dim, blur_kernel=blur_kernel, clamp=conv_clamp)
        self.to_rgb1 = ToRGB(c4, style_dim, upsample=False, clamp=conv_clamp)

        self.num_layers = (log_size - 2) * 2 + 1
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = 2 ** ((layer_idx + 5) // 2)
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, res, res))
        in_channel = c4
        for i in range(3, log_size + 1):
            out_channel = self.channels[2 ** i]
            self.convs.append(StyledConv(in_channel, out_channel, 3, style_dim, upsample=True,
                                         blur_kernel=blur_kernel, clamp=conv_clamp))
            self.convs.append(StyledConv(out_channel, out_channel, 3, style_dim, blur_kernel=blur_kernel,
                                         clamp=conv_clamp))
            self.to_rgbs.append(ToRGB(out_channel, style_dim, blur_kernel=blur_kernel, clamp=conv_clamp))
            in_channel = out_channel
        self.n_latent = log_size * 2 - 2
        self.register_buffer("latent_avg", torch.zeros(style_dim), persistent=False)

    @property
    def config(self) -> GeneratorConfig:
        table = rosinality_channels(self.channel_multiplier)
        standard = all(table[r] == c for r, c in self.channels.items())
        explicit = None if standard else tuple(sorted(self.channels.items()))
        return GeneratorConfig(self.size, self.style_dim, self.n_mlp, self.channel_multiplier, self.lr_mlp,
                               explicit, self.conv_clamp)

    # ----- latents -----
    def truncate(self, w: torch.Tensor, truncation: float) -> torch.Tensor:
        """w [..., style_dim] moved towards latent_avg: avg + t * (w - avg)."""
        if truncation == 1:
            return w
        return self.latent_avg + truncation * (w - self.latent_avg)

    def mapping(self, z: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        """z [B, style_dim] -> w [B, style_dim]."""
        return self.truncate(self.style(z), truncation)

    def _noises(self, batch: int, noise_mode: str, ref: torch.Tensor) -> list[torch.Tensor | None]:
        if noise_mode == "const":
            return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        if noise_mode == "random":
            return [torch.randn(batch, 1, 2 ** ((i + 5) // 2), 2 ** ((i + 5) // 2), device=ref.device, dtype=ref.dtype)
                    for i in range(self.num_layers)]
        if noise_mode == "none":
            return [None] * self.num_layers
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")

    # ----- per-layer structure -----
    def modulated_layers(self) -> list[tuple[str, nn.Module, int]]:
        """(name, module, w_plus index) of every modulated layer in synthesis order (conv1, to_rgb1, convs.0, ...)."""
        layers: list[tuple[str, nn.Module, int]] = [("conv1", self.conv1, 0), ("to_rgb1", self.to_rgb1, 1)]
        for k in range(len(self.to_rgbs)):
            i = 2 * k + 1
            layers += [(f"convs.{2 * k}", self.convs[2 * k], i), (f"convs.{2 * k + 1}", self.convs[2 * k + 1], i + 1),
                       (f"to_rgbs.{k}", self.to_rgbs[k], i + 2)]
        return layers

    def style_space(self, w_plus: torch.Tensor) -> list[torch.Tensor]:
        """w_plus [B, n_latent, style_dim] -> one style s [B, C_in] per modulated conv (incl. to_rgb), in order."""
        return [m.conv.modulation(w_plus[:, idx]) for _, m, idx in self.modulated_layers()]

    def synthesis_from_styles(self, styles: Sequence[torch.Tensor], noise_mode: str = "const") -> torch.Tensor:
        """StyleSpace styles (as from ``style_space``) -> image [B, 3, size, size]."""
        batch = styles[0].shape[0]
        noise = self._noises(batch, noise_mode, styles[0])
        out = self.input(batch)
        out = self.conv1.forward_style(out, styles[0], noise[0])
        skip = self.to_rgb1.forward_style(out, styles[1], None)
        s = 2
        for k in range(len(self.to_rgbs)):
            out = self.convs[2 * k].forward_style(out, styles[s], noise[2 * k + 1])
            out = self.convs[2 * k + 1].forward_style(out, styles[s + 1], noise[2 * k + 2])
            skip = self.to_rgbs[k].forward_style(out, styles[s + 2], skip)
            s += 3
        return skip

    def synthesis(self, w_plus: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        """w_plus [B, n_latent, style_dim] -> image [B, 3, size, size] in ~[-1, 1]."""
        if w_plus.ndim != 3 or w_plus.shape[1] != self.n_latent:
            raise ValueError(f"w_plus must be [B, {self.n_latent}, {self.style_dim}], got {tuple(w_plus.shape)}")
        return self.synthesis_from_styles(self.style_space(w_plus), noise_mode)

    def forward(self, latent: torch.Tensor, input_is: str = "w_plus", truncation: float = 1.0,
                noise_mode: str = "const") -> torch.Tensor:
        """latent: z or w [B, style_dim], or w_plus [B, n_latent, style_dim] -> image [B, 3, size, size]."""
        if input_is == "z":
            w_plus = self.style(latent)[:, None].expand(-1, self.n_latent, -1)
        elif input_is == "w":
            w_plus = latent[:, None].expand(-1, self.n_latent, -1)
        elif input_is == "w_plus":
            w_plus = latent
        else:
            raise ValueError(f"input_is must be one of {INPUT_KINDS}, got {input_is!r}")
        return self.synthesis(self.truncate(w_plus, truncation), noise_mode)

    def mean_latent(self, n: int = 4096, seed: int = 0) -> torch.Tensor:
        """Monte-Carlo mean of w over n random z [style_dim] (for files without latent_avg)."""
        g = torch.Generator(device="cpu").manual_seed(seed)
        z = torch.randn(n, self.style_dim, generator=g).to(self.latent_avg.device)
        with torch.no_grad():
            return self.style(z).mean(0)

    def frozen_for_out_of_domain(self) -> list[str]:
        """Parameter names of the upper half of the synthesis blocks (StyledConv pairs and their to_rgbs).

        At 1024 these are rosinality convs 8-15 + to_rgbs 4-7 (all layers at resolution >= 128, four of the eight
        blocks), the layers STIT / the paper keep frozen for out-of-domain edits. Smaller generators freeze the same
        share, their upper half (a 64 px generator: the 32 and 64 px blocks), so that phase 2 still has layers to
        tune (freezing four blocks there would freeze every block but the 4x4 one).
        """
        n_blocks = len(self.to_rgbs)
        first = n_blocks - max(1, n_blocks // 2)
        prefixes = tuple(f"convs.{i}." for i in range(2 * first, 2 * n_blocks)) + tuple(
            f"to_rgbs.{k}." for k in range(first, n_blocks))
        return [n for n, _ in self.named_parameters() if n.startswith(prefixes)]


# ----------------------------------------------------------------------------- loading

def infer_config(state_dict: Mapping[str, torch.Tensor], lr_mlp: float = 0.01) -> GeneratorConfig:
    """Generator config from a rosinality-layout state dict (size, style_dim, n_mlp, channels)."""
    try:
        style_dim = int(state_dict["conv1.conv.modulation.weight"].shape[1])
        n_to_rgbs = len({k.split(".")[1] for k in state_dict if k.startswith("to_rgbs.")})
        size = 2 ** (n_to_rgbs + 2)
        n_mlp = len({k.split(".")[1] for k in state_dict if k.startswith("style.") and k.endswith(".weight")})
        channels = {4: int(state_dict["input.input"].shape[1])}
        for k in range(n_to_rgbs):
            channels[2 ** (k + 3)] = int(state_dict[f"convs.{2 * k}.conv.weight"].shape[1])
    except KeyError as exc:
        raise CheckpointFormatError(f"Not a StyleGAN2 generator state dict (missing {exc.args[0]!r}).") from exc
    for cm in (2, 1, 4, 8):
        table = rosinality_channels(cm)
        if all(table[r] == c for r, c in channels.items()):
            return GeneratorConfig(size, style_dim, n_mlp, cm, lr_mlp)
    return GeneratorConfig(size, style_dim, n_mlp, 2, lr_mlp, tuple(sorted(channels.items())))


def _is_generator_state(d: Mapping[str, Any]) -> bool:
    return "conv1.conv.weight" in d and "input.input" in d


def pick_generator_state(obj: Mapping[str, Any], key: str | None) -> tuple[Mapping[str, torch.Tensor], Any]:
    """(generator state dict, latent_avg or None) from a loaded rosinality / NADA / pSp-family file."""
    latent_avg = obj.get("latent_avg")
    if key is not None:
        if key not in obj:
            raise CheckpointFormatError(f"Checkpoint has no entry {key!r} (entries: {sorted(obj)[:10]}).")
        sd = obj[key]
    elif _is_generator_state(obj):
        sd = obj
    else:
        for candidate in ("g_ema", "G_ema", "generator", "g"):
            if isinstance(obj.get(candidate), Mapping):
                sd = obj[candidate]
                break
        else:
            if isinstance(obj.get("state_dict"), Mapping):  # pSp / e4e / ReStyle files hold their decoder
                sd = strip_prefix(obj["state_dict"], "decoder.")
            else:
                raise CheckpointFormatError(
                    f"No StyleGAN2 generator found in checkpoint (entries: {sorted(map(str, obj))[:10]}).")
    if not isinstance(sd, Mapping) or not _is_generator_state(sd):
        raise CheckpointFormatError("The selected checkpoint entry is not a rosinality-layout generator state dict.")
    return sd, latent_avg


def generator_from_state(sd: Mapping[str, torch.Tensor], latent_avg: torch.Tensor | None = None,
                         config: GeneratorConfig | None = None) -> Generator:
    """Build a Generator from a rosinality-layout state dict (strict), eval mode, float32."""
    config = config or infer_config(sd)
    g = config.build()
    try:
        g.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    except RuntimeError as exc:
        raise CheckpointFormatError(f"Generator weights do not match the inferred config {config}: {exc}") from exc
    if latent_avg is not None:
        la = torch.as_tensor(latent_avg).float().reshape(-1, config.style_dim)[0]
        g.latent_avg.copy_(la)
    else:
        logger.info("Checkpoint has no latent_avg; using the mean of 4096 mapped z.")
        g.latent_avg.copy_(g.mean_latent())
    return g.eval().float()

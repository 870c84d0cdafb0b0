"""Tiny randomly initialised networks with the real modules' interfaces: the offline fallback of the app when no
checkpoint and no demo pack is available, and the networks of the end-to-end tests.

Their outputs are noise-like faces-to-be: the app says so in its banner. Every builder is seeded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .edit import EditLoaders
from .models.mapper import LevelsMapper
from .models.stylegan2 import Generator

TINY_SIZE = 64
TINY_STYLE_DIM = 64


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny_generator(size: int = TINY_SIZE, style_dim: int = TINY_STYLE_DIM, seed: int = 0) -> Generator:
    """A small StyleGAN2 (same module and state-dict layout as the FFHQ one), eval mode, latent_avg set."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = Generator(size, style_dim=style_dim, n_mlp=2, channel_multiplier=1, channel_max=64)
    generator.latent_avg.copy_(generator.mean_latent(512, seed=seed))
    return generator.eval().requires_grad_(False)


class TinyEncoder(nn.Module):
    """image [B,3,H,W] in [-1,1] -> w_plus [B,n_latent,style_dim] around ``latent_avg`` (as the real encoders)."""

    def __init__(self, n_latent: int, style_dim: int, latent_avg: torch.Tensor, width: int = 16) -> None:
        super().__init__()
        self.n_latent, self.style_dim = n_latent, style_dim
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(width, width * 2, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        )
        self.head = nn.Linear(width * 2 * 16, n_latent * style_dim)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("latent_avg", latent_avg.detach().clone().reshape(1, 1, style_dim))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(image, size=(64, 64), mode="bilinear", align_corners=False, antialias=True)
        codes = self.head(self.features(x)).view(-1, self.n_latent, self.style_dim)
        return codes + self.latent_avg


def tiny_encoder(generator: Generator, seed: int = 0) -> TinyEncoder:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = TinyEncoder(generator.n_latent, generator.style_dim, generator.latent_avg)
    return encoder.eval().requires_grad_(False)


def tiny_edit_loaders(generator: Generator, seed: int = 0) -> EditLoaders:
    """Edit networks for every catalogue entry: random mappers and directions, perturbed generator copies."""
    n_latent, style_dim = generator.n_latent, generator.style_dim

    def mapper(name: str) -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + sum(map(ord, name)))
            return LevelsMapper(n_latent=n_latent, style_dim=style_dim).eval()

    def direction(name: str, key: str | None = None) -> torch.Tensor:
        gen = _seeded(seed + sum(map(ord, f"{name}:{key}")))
        d = torch.randn(style_dim, generator=gen)
        return d / d.norm()

    def styled(name: str) -> nn.Module:
        copy = tiny_generator(generator.size, style_dim, seed)
        copy.load_state_dict(generator.state_dict())
        copy.latent_avg.copy_(generator.latent_avg)
        gen = _seeded(seed + sum(map(ord, name)))
        with torch.no_grad():
            for pname, param in copy.named_parameters():
                if pname.startswith(("convs", "to_rgb")):
                    param.add_(0.2 * param.std(correction=0) * torch.randn(param.shape, generator=gen))
        return copy.eval()

    def clip():
        from .text import tiny_clip

        return tiny_clip(seed=seed)

    return EditLoaders(mapper=mapper, direction=direction, generator=styled, clip=clip, is_available=lambda _: True)


def flickering_toy_clip(seed: int = 0, frames: int = 5, jitter: float = 0.5, motion: float = 0.1,
                        edit_strength: float = 0.5, style_dim: int = 32,
                        size: int = 64) -> dict[str, torch.Tensor | nn.Module]:
    """The consistency proof's toy: a smooth latent path and a flickering direct edit of it.

    A tiny random generator whose 16-64 px to_rgb layers are damped (smooth images on which classical flow works)
    renders ``inputs`` from a slow sinusoidal W+ path; the direct edit adds one fixed direction plus i.i.d.
    per-frame jitter (``jitter`` x a unit Gaussian in every latent entry): flicker. Returns generator ``g``
    (frozen), ``w_in``/``w_edit`` [T,n_latent,D] and ``inputs``/``direct`` [T,3,size,size].
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        g = Generator(size=size, style_dim=style_dim, n_mlp=2, channel_multiplier=1, channel_max=16).eval()
        with torch.no_grad():
            for k in range(1, len(g.to_rgbs)):
                g.to_rgbs[k].conv.weight.mul_(0.05)
        g.requires_grad_(False)
        base = torch.randn(1, 1, style_dim)
        t = torch.linspace(0, 1, frames)[:, None, None]
        w_in = (base + motion * torch.sin(2 * torch.pi * t) * torch.randn(1, g.n_latent, style_dim)).contiguous()
        direction = torch.randn(1, g.n_latent, style_dim)
        w_edit = w_in + edit_strength * direction + jitter * torch.randn(frames, g.n_latent, style_dim)
    with torch.no_grad():
        inputs, direct = g.synthesis(w_in), g.synthesis(w_edit)
    return {"g": g, "w_in": w_in, "w_edit": w_edit, "inputs": inputs, "direct": direct}

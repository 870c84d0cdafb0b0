"""CLIP text/image embeddings behind a small protocol (free-text edits: StyleCLIP-style optimisation, StyleGAN-NADA).

The real model is OpenAI's CLIP ViT-B/32 through open-clip-torch; its weights come from the checkpoint registry
(``clip-vit-b-32``) and are loaded into ``open_clip.create_model(..., pretrained=None)``, so open_clip never downloads
anything itself. ``tiny_clip`` builds a small random open_clip model with the same interface for tests.

Both embeddings are L2-normalised and differentiable with respect to the image.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from .errors import CheckpointFormatError

logger = logging.getLogger(__name__)

__all__ = [
    "TextImageEmbedder",
    "OpenClipEmbedder",
    "load_clip",
    "tiny_clip",
    "TinyEmbedder",
    "text_embedding",
    "text_direction",
    "IMAGENET_TEMPLATES",
]

# A short subset of CLIP's ImageNet prompt templates (StyleGAN-NADA and STIT average text features over templates);
# a few are enough to stabilise the text direction, and each template costs one text-encoder row.
IMAGENET_TEMPLATES = (
    "a photo of a {}.",
    "a bad photo of a {}.",
    "a cropped photo of the {}.",
    "a close-up photo of a {}.",
    "a bright photo of a {}.",
    "a good photo of the {}.",
    "a rendering of a {}.",
    "a drawing of a {}.",
)

_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@runtime_checkable
class TextImageEmbedder(Protocol):
    """What the free-text edits need from CLIP."""

    embed_dim: int

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """N strings -> [N, D] unit-norm embeddings."""
        ...

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """image [B,3,H,W] in [-1,1] (any size) -> [B, D] unit-norm embeddings, differentiable w.r.t. image."""
        ...


class OpenClipEmbedder(nn.Module):
    """An open_clip ``CLIP`` model with its tokenizer and input normalisation; frozen, eval mode."""

    def __init__(self, model: nn.Module, tokenizer, image_size: int,
                 mean: Sequence[float] = _OPENAI_MEAN, std: Sequence[float] = _OPENAI_STD):
        super().__init__()
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.embed_dim = int(self.model.text_projection.shape[1]) if hasattr(self.model, "text_projection") else None

    def train(self, mode: bool = True) -> OpenClipEmbedder:
        super().train(mode)
        self.model.eval()
        return self

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(texts)).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """[-1,1] -> CLIP input: [0,1], resized to image_size (faces are square: no crop), mean/std normalised."""
        x = (image.float() + 1.0) * 0.5
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            # area averaging when shrinking (1024 -> 224) avoids the aliasing a plain bilinear resize would feed CLIP
            mode = "area" if x.shape[-1] > self.image_size else "bilinear"
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode=mode,
                              **({} if mode == "area" else {"align_corners": False}))
        return (x - self.mean) / self.std

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.encode_image(self.preprocess(image)).float(), dim=-1)


def load_clip(name_or_path: str | os.PathLike[str] = "clip-vit-b-32", model_name: str = "ViT-B-32",
              device: str | torch.device = "cpu") -> OpenClipEmbedder:
    """OpenAI CLIP through open_clip with weights from the registry (or a local ``.safetensors``/``.pt`` file).

    Raises ``CheckpointUnavailable`` when the weights cannot be found (never lets open_clip download).
    """
    import open_clip

    from . import checkpoints

    def build(path: str | os.PathLike[str]) -> OpenClipEmbedder:
        # OpenAI's weights were trained with QuickGELU; open_clip only sets it itself when it loads the 'openai' tag.
        model = open_clip.create_model(model_name, pretrained=None, force_quick_gelu=True)
        state = _read_state(path)
        state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("attn_mask")]
        if missing or unexpected:
            raise CheckpointFormatError(
                f"CLIP weights at {path} do not match open_clip {model_name} (missing {missing[:4]}, unexpected "
                f"{unexpected[:4]}).")
        image_size = model.visual.image_size
        image_size = image_size[0] if isinstance(image_size, (tuple, list)) else image_size
        return OpenClipEmbedder(model, open_clip.get_tokenizer(model_name), image_size).to(device)

    if str(name_or_path) in checkpoints.REGISTRY:  # load() names the checkpoint when its file cannot be used
        return checkpoints.load(str(name_or_path), build)
    return build(name_or_path)


def _read_state(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    from .models.serialization import load_torch_file

    obj = load_torch_file(path)
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointFormatError(f"CLIP checkpoint {path} is not a state dict.")
    return obj


def tiny_clip(embed_dim: int = 32, width: int = 32, image_size: int = 32, seed: int = 0) -> OpenClipEmbedder:
    """A small random open_clip model (1-layer ViT and text transformer) with the real BPE tokenizer: tests only."""
    import open_clip

    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = open_clip.CLIP(
            embed_dim,
            vision_cfg=dict(layers=1, width=width, patch_size=8, image_size=image_size, head_width=16),
            text_cfg=dict(context_length=77, vocab_size=49408, width=width, heads=2, layers=1),
        )
    finally:
        torch.random.set_rng_state(state)
    return OpenClipEmbedder(model, open_clip.get_tokenizer("ViT-B-32"), image_size)


class TinyEmbedder(nn.Module):
    """A few-thousand-parameter random embedder with the protocol (byte tokens; 3-layer conv image tower): tests.

    Builds in milliseconds and needs no open_clip import, for tests of code that only consumes the protocol.
    """

    def __init__(self, embed_dim: int = 32, image_size: int = 32, seed: int = 0):
        super().__init__()
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            self.token = nn.EmbeddingBag(257, embed_dim, mode="mean")
            self.text_proj = nn.Linear(embed_dim, embed_dim)
            self.image = nn.Sequential(
                nn.Conv2d(3, 16, 3, 2, 1), nn.GELU(), nn.Conv2d(16, 32, 3, 2, 1), nn.GELU(),
                nn.Conv2d(32, 32, 3, 2, 1), nn.GELU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                nn.Linear(128, embed_dim))
        finally:
            torch.random.set_rng_state(state)
        self.embed_dim, self.image_size = embed_dim, image_size
        self.requires_grad_(False)
        self.eval()

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        device = self.text_proj.weight.device
        ids = [torch.tensor([256, *t.encode("utf-8")], dtype=torch.long) for t in texts]
        offsets = torch.tensor([0, *torch.tensor([len(i) for i in ids]).cumsum(0)[:-1].tolist()])
        emb = self.token(torch.cat(ids).to(device), offsets.to(device))
        return F.normalize(self.text_proj(emb), dim=-1)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(image.float(), size=(self.image_size, self.image_size), mode="bilinear",
                          align_corners=False)
        return F.normalize(self.image(x), dim=-1)


def text_embedding(embedder: TextImageEmbedder, text: str,
                   templates: Sequence[str] = IMAGENET_TEMPLATES) -> torch.Tensor:
    """One unit-norm embedding [D] for ``text``, averaged over prompt templates (as StyleGAN-NADA / STIT do)."""
    prompts = [t.format(text) for t in templates] if templates else [text]
    with torch.no_grad():
        emb = embedder.encode_text(prompts)
    return F.normalize(emb.mean(0), dim=-1)


def text_direction(embedder: TextImageEmbedder, source: str, target: str,
                   templates: Sequence[str] = IMAGENET_TEMPLATES) -> torch.Tensor:
    """Unit-norm CLIP text direction [D] from ``source`` to ``target`` (StyleGAN-NADA's directional target)."""
    prompts_s = [t.format(source) for t in templates] if templates else [source]
    prompts_t = [t.format(target) for t in templates] if templates else [target]
    with torch.no_grad():
        emb = embedder.encode_text(prompts_s + prompts_t)
    n = len(prompts_s)
    return F.normalize(emb[n:].mean(0) - emb[:n].mean(0), dim=-1)

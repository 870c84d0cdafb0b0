"""Direct editing of inverted clips (the paper's baseline and the start of the consistency optimisation).

Every edit maps the inversion's per-frame codes ``w_plus [T,n_latent,D]`` and generator to edited codes, the
generator(s) that render them, and the rendered aligned frames, in one ``EditResult``:

- in-domain, generator frozen: StyleCLIP latent mappers ``w + s*M(w)`` (paper Sec. 4 / notes §4.1: s=0.15 for
  eyeglasses, StyleCLIP's 0.1 otherwise) and W / W+ directions ``w + s*d`` (InterFaceGAN++, StyleGANEX);
- out-of-domain: StyleGAN-NADA generators render the same codes (strength blends the weights from the base to the
  style generator; 1 = the NADA generator as released);
- free text, in-domain: one W+ residual shared by all frames, optimised with CLIP on the clip's own frames
  (``optimise_text_residual``); free text, out-of-domain: a short StyleGAN-NADA fine-tune from a source/target text
  pair (``train_nada``).

Why a shared W+ residual for free text rather than StyleCLIP global directions: it edits W+ (what the consistency
stage and the mapper residual of phase 1 work on) instead of StyleSpace; it needs no per-generator channel statistics
(fs3 is only published for FFHQ-1024 and S_mean_std is not on the Hub); it works with any generator, tiny test ones
included; one residual for every frame is temporally consistent by construction; and 100 steps on 4 frames run in
well under a minute on a GPU at 1024 px.

``EDITS`` is the catalogue the app and CLI list: user-facing name -> kind, checkpoint(s) with fallbacks, default
strength and the W+ rows the edit touches (coarse 0-3, medium 4-7, fine 8+).
"""

from __future__ import annotations

import copy
import logging
import math
import time
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import checkpoints
from .errors import CheckpointFormatError, CheckpointUnavailable, TcveError
from .invert import Progress, _module_device, _no_progress, render
from .text import TextImageEmbedder, text_direction, text_embedding

logger = logging.getLogger(__name__)

__all__ = [
    "RowGroup",
    "ALL_ROWS",
    "row_indices",
    "EditSource",
    "EditEntry",
    "EDITS",
    "EditSpec",
    "TextEditConfig",
    "NadaTrainConfig",
    "EditConfig",
    "EditLoaders",
    "EditResult",
    "UnknownEdit",
    "edit_names",
    "resolve_source",
    "available_edits",
    "edit_availability",
    "mapper_edit",
    "direction_edit",
    "blend_generators",
    "optimise_text_residual",
    "train_nada",
    "clip_similarity",
    "apply_edit",
]

RowGroup = Literal["coarse", "medium", "fine"]
ALL_ROWS: tuple[RowGroup, ...] = ("coarse", "medium", "fine")
COARSE_MEDIUM: tuple[RowGroup, ...] = ("coarse", "medium")
EditKind = Literal["mapper", "direction", "nada", "text", "text-nada"]


class UnknownEdit(TcveError):
    """The requested edit name is not in the catalogue."""


def row_indices(n_latent: int, groups: Sequence[str]) -> tuple[int, ...]:
    """W+ rows of StyleCLIP's levels: coarse 0-3, medium 4-7, fine 8..n_latent-1 (clipped to n_latent)."""
    spans = {"coarse": range(0, 4), "medium": range(4, 8), "fine": range(8, n_latent)}
    bad = set(groups) - set(spans)
    if bad:
        raise ValueError(f"unknown row groups {sorted(bad)}; use coarse / medium / fine")
    return tuple(sorted({i for g in groups for i in spans[g] if i < n_latent}))


def _row_mask(n_latent: int, groups: Sequence[str], like: torch.Tensor) -> torch.Tensor:
    mask = torch.zeros(n_latent, 1, device=like.device, dtype=like.dtype)
    mask[list(row_indices(n_latent, groups))] = 1.0
    return mask


# ----------------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class EditSource:
    """One way to realise an edit: a kind, the checkpoint it needs, its strength and the rows it changes."""

    kind: EditKind
    checkpoint: str  # registry name (text edits: the CLIP checkpoint)
    default_strength: float
    strength_range: tuple[float, float]
    rows: tuple[RowGroup, ...] = ALL_ROWS
    key: str | None = None  # entry of a direction dictionary file (StyleGANEX direction_dics.pt)
    scale: float = 1.0  # sign / unit of a direction (e.g. -1: 'age' = older = minus InterFaceGAN 'Young')
    note: str = ""


@dataclass(frozen=True)
class EditEntry:
    """A user-facing edit; ``sources`` in order of preference (the first available one is used)."""

    name: str
    domain: Literal["in", "out"]
    sources: tuple[EditSource, ...]
    description: str = ""

    @property
    def kind(self) -> EditKind:
        return self.sources[0].kind

    @property
    def checkpoints(self) -> tuple[str, ...]:
        return tuple(s.checkpoint for s in self.sources)


def _mapper(name: str, ckpt: str, rows: tuple[RowGroup, ...], strength: float = 0.1, note: str = "") -> EditSource:
    return EditSource("mapper", ckpt, strength, (0.0, 0.3), rows, note=note or f"StyleCLIP mapper '{name}'")


def _ifg(name: str, strength: float = 3.0, rows: tuple[RowGroup, ...] = ALL_ROWS, scale: float = 1.0,
         note: str = "") -> EditSource:
    return EditSource("direction", f"interfacegan-{name}", strength, (-6.0, 6.0), rows, scale=scale,
                      note=note or f"InterFaceGAN++ W boundary '{name}'")


def _ganex(key: str, strength: float = 1.0, rows: tuple[RowGroup, ...] = ALL_ROWS, scale: float = 1.0,
           note: str = "") -> EditSource:
    return EditSource("direction", "directions-styleganex", strength, (-2.0, 2.0), rows, key=key, scale=scale,
                      note=note or f"StyleGANEX W+ direction '{key}'")


def _build_catalogue() -> dict[str, EditEntry]:
    entries: list[EditEntry] = [
        EditEntry("eyeglasses", "in", (
            _mapper("eyeglasses", "mapper-eyeglasses", COARSE_MEDIUM, 0.15,
                    "the paper's mapper (VideoEditGAN, factor 0.15); not on the Hub, provide it locally"),
            _ifg("eyeglasses", 3.0, COARSE_MEDIUM,
                 note="fallback: InterFaceGAN++ 'Eyeglasses' boundary, on the mapper's coarse+medium rows"),
            _ganex("glasses", 1.0, note="fallback: StyleGANEX 'glasses' W+ direction"),
        ), "add eyeglasses"),
        EditEntry("beard", "in", (
            _mapper("beard", "mapper-beard", COARSE_MEDIUM, 0.1, "the paper's beard mapper (not released)"),
            _ifg("mustache", 3.0, note="fallback: InterFaceGAN++ 'Mustache', the closest hosted facial-hair direction"),
        ), "add a beard"),
        EditEntry("age", "in", (
            _ifg("young", 3.0, scale=-1.0, note="InterFaceGAN++ 'Young' boundary, negated: positive = older"),
            _ganex("reduce_age", 1.0, scale=-1.0, note="fallback: StyleGANEX 'reduce_age', negated"),
        ), "older (positive) or younger (negative)"),
        EditEntry("smile", "in", (_ifg("smiling", 3.0), _ganex("smile", 1.0)), "smile"),
        EditEntry("pose", "in", (_ganex("pose", 1.0),), "turn the head (yaw)"),
        EditEntry("bald", "in", (_ifg("bald", 3.0),), "remove hair"),
        EditEntry("hat", "in", (_ifg("hat", 3.0),), "add a hat"),
        EditEntry("mustache", "in", (_ifg("mustache", 3.0),), "add a mustache"),
        EditEntry("open eyes", "in", (_ganex("open_eye", 1.0),), "open the eyes wider"),
        EditEntry("open mouth", "in", (_ganex("open_mouth", 1.0),), "open the mouth"),
        EditEntry("light hair", "in", (_ganex("light_hair_color", 1.0),), "lighter hair colour"),
        EditEntry("slender", "in", (_ganex("slender", 1.0),), "slimmer face"),
    ]
    # StyleCLIP's released mappers; PTI's scripts/pti_styleclip.py meta_data says which were trained without fine rows
    no_fine = {"afro", "angry", "bobcut", "bowlcut", "curly_hair", "mohawk", "surprised"}
    for name in checkpoints.STYLECLIP_MAPPER_NAMES:
        label = name.replace("_", " ")
        rows = COARSE_MEDIUM if name in no_fine else ALL_ROWS
        entries.append(EditEntry(label, "in", (_mapper(label, f"mapper-{name.replace('_', '-')}", rows),),
                                 f"StyleCLIP mapper: {label}"))
    entries.append(EditEntry("text", "in", (
        EditSource("text", "clip-vit-b-32", 1.0, (0.0, 2.0), ALL_ROWS,
                   note="free text: a W+ residual shared by all frames, optimised with CLIP on the clip's frames"),
    ), "any text, in-domain (e.g. 'a face with a beard')"))
    for name in checkpoints.NADA_STYLE_NAMES:
        label = name.replace("_", " ")
        entries.append(EditEntry(label, "out", (
            EditSource("nada", f"nada-{name.replace('_', '-')}", 1.0, (0.0, 1.0), ALL_ROWS,
                       note=f"StyleGAN-NADA generator '{name}' (strength blends base -> style weights)"),
        ), f"StyleGAN-NADA style: {label}"))
    entries.append(EditEntry("text style", "out", (
        EditSource("text-nada", "clip-vit-b-32", 1.0, (0.0, 1.0), ALL_ROWS,
                   note="free text: a short StyleGAN-NADA fine-tune from source/target texts"),
    ), "any style by text, out-of-domain (e.g. 'photo' -> 'oil painting')"))
    table = {e.name: e for e in entries}
    if len(table) != len(entries):  # pragma: no cover - guards the table above
        raise RuntimeError("duplicate edit names in the catalogue")
    return table


EDITS: Mapping[str, EditEntry] = types.MappingProxyType(_build_catalogue())


def edit_names(domain: str | None = None) -> list[str]:
    return [n for n, e in EDITS.items() if domain is None or e.domain == domain]


def _entry(name: str) -> EditEntry:
    key = name.strip().lower().replace("_", " ").replace("-", " ")
    if key in EDITS:
        return EDITS[key]
    raise UnknownEdit(f"Unknown edit '{name}'. Available edits: {', '.join(EDITS)}.")


def resolve_source(name: str, is_available: Callable[[str], bool] | None = None) -> EditSource:
    """The first source of edit ``name`` whose checkpoint is available (``checkpoints.is_cached`` by default).

    Raises ``CheckpointUnavailable`` naming the preferred checkpoint (and the fallbacks tried) when none is.
    """
    entry = _entry(name)
    is_available = is_available or checkpoints.is_cached
    for source in entry.sources:
        if is_available(source.checkpoint):
            return source
    first = checkpoints.get(entry.sources[0].checkpoint)
    tried = ", ".join(entry.checkpoints)
    raise CheckpointUnavailable(first.name, first.repo_id, first.filename, f"edit '{entry.name}' needs one of: {tried}")


def _fetchable(name: str) -> bool:
    try:
        checkpoints.fetch(name)
        return True
    except TcveError:
        return False


def edit_availability(download: bool = False,
                      is_available: Callable[[str], bool] | None = None) -> dict[str, EditSource | None]:
    """Every catalogue edit -> the source that would be used, or None (the app greys those out).

    ``download=True`` tries ``checkpoints.fetch`` (may download); default only looks at local files / caches.
    """
    check = is_available or (_fetchable if download else checkpoints.is_cached)
    out: dict[str, EditSource | None] = {}
    for name, entry in EDITS.items():
        out[name] = next((s for s in entry.sources if check(s.checkpoint)), None)
    return out


def available_edits(domain: str | None = None, download: bool = False,
                    is_available: Callable[[str], bool] | None = None) -> list[str]:
    """Names of the edits that can run now (see ``edit_availability``)."""
    avail = edit_availability(download, is_available)
    return [n for n, s in avail.items() if s is not None and (domain is None or EDITS[n].domain == domain)]


# ----------------------------------------------------------------------------- configs, result


@dataclass(frozen=True)
class EditSpec:
    """What the user asked for: a catalogue name, a strength (None: the default) and texts for free-text edits."""

    name: str
    strength: float | None = None
    target_text: str = ""  # 'text' / 'text style' edits
    source_text: str = ""  # '' -> TextEditConfig.source_text / NadaTrainConfig.source_text


@dataclass(frozen=True)
class TextEditConfig:
    """In-domain free text: one W+ residual shared by all frames, optimised with CLIP (StyleCLIP-style)."""

    steps: int = 100
    lr: float = 0.05  # Adam on the residual, cosine ramp-down
    keyframes: int = 8  # frames of the clip the residual is fitted on (evenly spaced)
    batch_size: int = 4  # keyframes per step
    rows: tuple[RowGroup, ...] = ALL_ROWS  # W+ rows the residual may change
    direction_weight: float = 1.0  # 1 - cos(E(x_edit) - E(x_orig), text direction)  (StyleGAN-NADA's loss)
    global_weight: float = 0.5  # 1 - cos(E(x_edit), E(target))  (StyleCLIP's loss)
    l2_weight: float = 0.008  # StyleCLIP l2_lambda on the residual (sum of squares)
    source_text: str = "face"
    noise_mode: str = "const"
    seed: int = 0


@dataclass(frozen=True)
class NadaTrainConfig:
    """Out-of-domain free text: StyleGAN-NADA defaults (README train command; ``options/train_options.py``)."""

    steps: int = 300  # --iter 301 (0..300)
    lr: float = 0.002  # --lr, scaled by g_reg_ratio as upstream: Adam(lr*r, betas=(0, 0.99**r))
    g_reg_ratio: float = 0.8  # g_reg_every / (g_reg_every + 1) with g_reg_every = 4
    batch_size: int = 2
    auto_layer_k: int = 18  # W+ rows (layers) trained per step; clamped to n_latent
    auto_layer_iters: int = 1  # SGD steps on W+ codes that pick the layers (0: train all synthesis convs)
    auto_layer_batch: int = 8
    auto_layer_lr: float = 0.01
    source_text: str = "photo"
    truncation: float = 1.0  # training codes (mixing 0)
    noise_mode: str = "const"
    seed: int = 0


@dataclass(frozen=True)
class EditConfig:
    text: TextEditConfig = TextEditConfig()
    nada: NadaTrainConfig = NadaTrainConfig()
    render_batch_size: int = 4


def _default_load_mapper(name: str) -> nn.Module:
    from .models import load_mapper

    return checkpoints.load(name, load_mapper)


def _default_load_generator(name: str) -> nn.Module:
    from .models import load_generator

    return checkpoints.load(name, load_generator)


def load_direction(name: str, key: str | None = None) -> torch.Tensor:
    """A W [D] or W+ [n_latent, D] direction from the registry (``npy`` boundaries or a dict file + key)."""
    ckpt = checkpoints.get(name)
    return checkpoints.load(name, lambda path: _read_direction(ckpt, path, key))


def _read_direction(ckpt: checkpoints.Checkpoint, path: Any, key: str | None) -> torch.Tensor:
    if ckpt.format == "npy" or str(path).endswith(".npy"):
        arr = np.load(path, allow_pickle=False)
        direction = torch.from_numpy(np.asarray(arr, dtype=np.float32))
    else:
        from .models.serialization import load_torch_file

        obj = load_torch_file(path)
        if isinstance(obj, Mapping):
            if key is None or key not in obj:
                raise CheckpointFormatError(f"Direction file {path} has no entry {key!r} (entries: {sorted(obj)}).")
            obj = obj[key]
        direction = torch.as_tensor(obj).float()
    return _squeeze_direction(direction)


def _squeeze_direction(direction: torch.Tensor) -> torch.Tensor:
    d = direction.float()
    while d.ndim > 2 and d.shape[0] == 1:
        d = d[0]
    if d.ndim == 2 and d.shape[0] == 1:
        d = d[0]
    if d.ndim not in (1, 2):
        raise CheckpointFormatError(f"A direction must be [D] or [n_latent, D], got {tuple(direction.shape)}")
    return d


@dataclass
class EditLoaders:
    """How an edit gets its networks (defaults: the checkpoint registry); tests inject tiny ones."""

    mapper: Callable[[str], nn.Module] = _default_load_mapper
    direction: Callable[[str, str | None], torch.Tensor] = load_direction
    generator: Callable[[str], nn.Module] = _default_load_generator
    clip: Callable[[], TextImageEmbedder] | None = None  # None: tcve.text.load_clip() (registry weights)
    is_available: Callable[[str], bool] | None = None  # None: checkpoints.is_cached
    note: Callable[[str], str | None] | None = None  # checkpoint -> what realises it here (None: the source's note)


@dataclass
class EditResult:
    """An edit of a whole clip, as the consistency stage consumes it.

    w_plus [T,n_latent,D] edited codes; generator renders them (frozen; the inversion's generator for in-domain
    edits, a NADA / fine-tuned one out-of-domain); images [T,3,S,S] in [-1,1] = generator(w_plus) with 'const' noise,
    on the generator's device. source_* are the inversion's codes and generator (the identity path).
    """

    name: str
    kind: EditKind
    strength: float
    w_plus: torch.Tensor
    generator: nn.Module
    images: torch.Tensor
    source_w_plus: torch.Tensor
    source_generator: nn.Module
    rows: tuple[int, ...]  # W+ rows changed (generator edits: all rows are rendered by the new generator)
    checkpoint: str | None = None
    mapper: nn.Module | None = None  # mapper edits: the mapper (phase 1 of the consistency stage starts from it)
    direction: torch.Tensor | None = None  # direction / text edits: the residual per unit strength [n_latent, D]
    note: str = ""
    seconds: float = 0.0
    seconds_per_frame: float = 0.0
    clip_similarity: tuple[float, float] | None = None  # text edits: mean CLIP similarity to the target, before/after
    clip_margin: tuple[float, float] | None = None  # text edits: similarity to target minus to source, before/after
    extra: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- edit kinds


def mapper_edit(w_plus: torch.Tensor, mapper: nn.Module, strength: float, rows: Sequence[str] = ALL_ROWS,
                batch_size: int = 16) -> torch.Tensor:
    """w + strength * M(w) on ``rows`` only: w_plus [T,n_latent,D] -> [T,n_latent,D] (no gradient)."""
    if strength == 0:
        return w_plus.clone()
    mask = _row_mask(w_plus.shape[1], rows, w_plus)
    out = []
    with torch.no_grad():
        for start in range(0, w_plus.shape[0], batch_size):
            w = w_plus[start:start + batch_size]
            out.append(w + strength * mapper(w) * mask)
    return torch.cat(out)


def _direction_plus(direction: torch.Tensor, n_latent: int, like: torch.Tensor) -> torch.Tensor:
    d = direction.to(like.device, like.dtype)
    if d.ndim == 1:
        d = d.expand(n_latent, -1)
    if d.shape[0] != n_latent or d.shape[-1] != like.shape[-1]:
        raise CheckpointFormatError(
            f"direction of shape {tuple(direction.shape)} does not fit W+ codes [{n_latent}, {like.shape[-1]}]")
    return d


def direction_edit(w_plus: torch.Tensor, direction: torch.Tensor, strength: float,
                   rows: Sequence[str] = ALL_ROWS) -> torch.Tensor:
    """w + strength * d on ``rows``: direction [D] (W, broadcast to every row) or [n_latent, D] (W+)."""
    if strength == 0:
        return w_plus.clone()
    d = _direction_plus(direction, w_plus.shape[1], w_plus) * _row_mask(w_plus.shape[1], rows, w_plus)
    return w_plus + strength * d


def blend_generators(base: nn.Module, styled: nn.Module, strength: float) -> nn.Module:
    """Weights base + strength*(styled - base) (0: base itself, 1: styled itself); frozen, eval mode."""
    if strength == 0:
        return base
    if strength == 1:
        return styled
    out = copy.deepcopy(styled)
    base_sd = base.state_dict()
    blended = {}
    for k, v in styled.state_dict().items():
        b = base_sd.get(k)
        blended[k] = torch.lerp(b.to(v), v, strength) if b is not None and v.is_floating_point() else v
    out.load_state_dict(blended)
    return out.eval().requires_grad_(False)


def clip_similarity(embedder: TextImageEmbedder, images: torch.Tensor, text: str, batch_size: int = 8) -> float:
    """Mean cosine similarity between CLIP embeddings of images [B,3,H,W] and the (templated) text."""
    t = text_embedding(embedder, text)
    sims = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            e = embedder.encode_image(images[start:start + batch_size].to(t.device))
            sims.append(e @ t)
    return float(torch.cat(sims).mean())


def _clip_scores(embedder: TextImageEmbedder, before: torch.Tensor, after: torch.Tensor, target: str,
                 source: str) -> dict[str, Any]:
    """How far a text edit moved keyframes in CLIP space: similarity to the target, target-minus-source margin
    (what the directional loss raises: (E_after - E_before) . (T_target - T_source) > 0 raises it), and the cosine
    between the mean image change and the text direction."""
    t_t, t_s = text_embedding(embedder, target), text_embedding(embedder, source)
    with torch.no_grad():
        e_b = embedder.encode_image(before.to(t_t.device))
        e_a = embedder.encode_image(after.to(t_t.device))
    sim = (float((e_b @ t_t).mean()), float((e_a @ t_t).mean()))
    margin = (float((e_b @ (t_t - t_s)).mean()), float((e_a @ (t_t - t_s)).mean()))
    cos = float(F.cosine_similarity((e_a - e_b).mean(0), text_direction(embedder, source, target), dim=0))
    return {"similarity": sim, "margin": margin, "direction_cos": cos}


def _keyframe_indices(n: int, k: int) -> torch.Tensor:
    k = max(1, min(k, n))
    return torch.linspace(0, n - 1, k).round().long().unique()


def optimise_text_residual(generator: nn.Module, w_plus: torch.Tensor, embedder: TextImageEmbedder, target_text: str,
                           config: TextEditConfig = TextEditConfig(), source_text: str | None = None,
                           progress: Progress | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One W+ residual delta [n_latent, D] for the whole clip that moves its frames towards ``target_text``.

    Loss per step (keyframes of the clip, generator frozen):
    ``direction_weight*(1 - cos(E(G(w+delta)) - E(G(w)), T_dir)) + global_weight*(1 - cos(E(G(w+delta)), T))
    + l2_weight*sum(delta^2)``, T_dir = text direction source -> target, delta zero outside ``config.rows``.
    Returns (delta, per-step loss [steps] on the CPU).
    """
    progress = progress or _no_progress
    device = _module_device(generator, w_plus.device)
    generator.requires_grad_(False)
    keys = _keyframe_indices(w_plus.shape[0], config.keyframes)
    w_keys = w_plus[keys].to(device).detach()
    n_latent, dim = w_keys.shape[1:]
    mask = _row_mask(n_latent, config.rows, w_keys)
    t_target = text_embedding(embedder, target_text).to(device)
    t_dir = text_direction(embedder, source_text or config.source_text, target_text).to(device)
    with torch.no_grad():
        e_orig = torch.cat([embedder.encode_image(generator.synthesis(w_keys[i:i + config.batch_size],
                                                                      noise_mode=config.noise_mode))
                            for i in range(0, len(keys), config.batch_size)])
    delta = torch.zeros(n_latent, dim, device=device, requires_grad=True)
    optim = torch.optim.Adam([delta], lr=config.lr)
    rng = torch.Generator().manual_seed(config.seed)
    losses = torch.zeros(config.steps, device=device)
    report_every = max(1, config.steps // 20)
    for step in range(config.steps):
        for group in optim.param_groups:  # StyleCLIP's cosine ramp-down
            group["lr"] = config.lr * 0.5 * (1 + math.cos(math.pi * step / max(1, config.steps)))
        pick = torch.randperm(len(keys), generator=rng)[:config.batch_size].to(device)
        w = w_keys[pick] + delta * mask
        e = embedder.encode_image(generator.synthesis(w, noise_mode=config.noise_mode))
        loss = config.l2_weight * (delta * mask).pow(2).sum()
        if config.direction_weight:
            loss = loss + config.direction_weight * (1 - F.cosine_similarity(e - e_orig[pick], t_dir[None])).mean()
        if config.global_weight:
            loss = loss + config.global_weight * (1 - e @ t_target).mean()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        losses[step] = loss.detach()
        if (step + 1) % report_every == 0 or step + 1 == config.steps:
            progress((step + 1) / config.steps, f"text edit step {step + 1}/{config.steps}")
    return (delta.detach() * mask), losses.cpu()


def _nada_layers(g: nn.Module) -> list[nn.Module]:
    """StyleGAN-NADA's W+ row -> layer map: row 0 conv1, row 1 to_rgb1, row r>=2 convs[r-2] (its ``idx_to_layer``)."""
    return [g.conv1, g.to_rgb1, *list(g.convs)]


def train_nada(generator: nn.Module, embedder: TextImageEmbedder, source_text: str, target_text: str,
               config: NadaTrainConfig = NadaTrainConfig(), progress: Progress | None = None
               ) -> tuple[nn.Module, torch.Tensor]:
    """StyleGAN-NADA from text: fine-tune a copy of ``generator`` with the directional CLIP loss.

    Per step: z ~ N(0,I) (batch), w = G_frozen.mapping(z); loss = 1 - cos(E(G(w)) - E(G_frozen(w)), T_dir),
    T_dir = text direction source -> target (templated). Adaptive layer freezing: ``auto_layer_iters`` SGD steps on
    W+ codes with the global CLIP loss pick the ``auto_layer_k`` rows that move most; only their layers train
    (``_nada_layers``). Returns (tuned generator, frozen and in eval mode; per-step loss [steps] on the CPU).
    """
    progress = progress or _no_progress
    device = _module_device(generator, torch.device("cpu"))
    g_frozen = generator
    g = copy.deepcopy(generator).to(device).train()
    g.requires_grad_(False)
    layers = _nada_layers(g)
    n_latent = g.n_latent
    k = min(config.auto_layer_k, n_latent, len(layers))
    t_dir = text_direction(embedder, source_text, target_text).to(device)
    t_target = F.normalize(embedder.encode_text([target_text]).detach()[0], dim=-1).to(device)
    r = config.g_reg_ratio
    params = [p for layer in layers for p in layer.parameters()]
    optim = torch.optim.Adam(params, lr=config.lr * r, betas=(0.0, 0.99 ** r))
    gen = torch.Generator(device=device).manual_seed(config.seed)
    losses = torch.zeros(config.steps, device=device)
    report_every = max(1, config.steps // 20)
    dim = g.style_dim
    for step in range(config.steps):
        if config.auto_layer_iters > 0 and k < len(layers):
            chosen = _choose_layers(g, g_frozen, embedder, t_target, config, gen, k)
        else:
            chosen = list(range(len(layers))) if config.auto_layer_iters > 0 else [0, *range(2, len(layers))]
        for i, layer in enumerate(layers):
            layer.requires_grad_(i in chosen)
        with torch.no_grad():
            z = torch.randn(config.batch_size, dim, device=device, generator=gen)
            w = g_frozen.mapping(z, truncation=config.truncation)[:, None].expand(-1, n_latent, -1)
            e_src = embedder.encode_image(g_frozen.synthesis(w, noise_mode=config.noise_mode))
        e = embedder.encode_image(g.synthesis(w, noise_mode=config.noise_mode))
        loss = (1 - F.cosine_similarity(e - e_src, t_dir[None])).mean()
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        losses[step] = loss.detach()
        if (step + 1) % report_every == 0 or step + 1 == config.steps:
            progress((step + 1) / config.steps, f"style fine-tune step {step + 1}/{config.steps}")
    g.eval().requires_grad_(False)
    return g, losses.cpu()


def _choose_layers(g: nn.Module, g_frozen: nn.Module, embedder: TextImageEmbedder, t_target: torch.Tensor,
                   config: NadaTrainConfig, gen: torch.Generator, k: int) -> list[int]:
    """StyleGAN-NADA's adaptive layer selection: the k W+ rows a global CLIP loss moves most."""
    device = t_target.device
    g.requires_grad_(False)  # only the codes need gradients here
    with torch.no_grad():
        z = torch.randn(config.auto_layer_batch, g.style_dim, device=device, generator=gen)
        w0 = g_frozen.mapping(z)[:, None].expand(-1, g.n_latent, -1).clone()
    w = w0.clone().requires_grad_(True)
    opt = torch.optim.SGD([w], lr=config.auto_layer_lr)
    for _ in range(config.auto_layer_iters):
        loss = (1 - embedder.encode_image(g.synthesis(w, noise_mode=config.noise_mode)) @ t_target).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    weights = (w.detach() - w0).abs().mean(-1).mean(0)
    return torch.topk(weights, k).indices.tolist()


# ----------------------------------------------------------------------------- entry point


def apply_edit(spec: EditSpec, w_plus: torch.Tensor, generator: nn.Module, *, base_generator: nn.Module | None = None,
               config: EditConfig = EditConfig(), loaders: EditLoaders | None = None,
               progress: Progress | None = None) -> EditResult:
    """Apply catalogue edit ``spec`` to an inverted clip and render it.

    w_plus [T,n_latent,D] and generator: the inversion (PTI-tuned or not). base_generator: the untuned generator the
    NADA styles were derived from (blending for strengths in (0,1) and NADA fine-tuning; default ``generator``).
    A strength of 0 returns the inversion exactly (same codes, same generator) without loading or training anything.
    Progress: 0-0.9 for the free-text optimisations, the rest (or all) for rendering.
    """
    progress = progress or _no_progress
    loaders = loaders or EditLoaders()
    entry = _entry(spec.name)
    t0 = time.perf_counter()
    is_text = entry.kind in ("text", "text-nada")
    if is_text and not spec.target_text.strip():
        raise TcveError(f"The '{entry.name}' edit needs a target text (e.g. 'a face with a beard').")
    # an injected CLIP replaces the registry weights, so the text edits need no checkpoint then
    source = resolve_source(entry.name, _always if (is_text and loaders.clip is not None) else loaders.is_available)
    strength = source.default_strength if spec.strength is None else float(spec.strength)
    lo, hi = source.strength_range
    if not lo <= strength <= hi:
        logger.warning("strength %.3g of '%s' is outside its usual range [%g, %g]", strength, entry.name, lo, hi)
    device = _module_device(generator, w_plus.device)
    w_plus = w_plus.to(device)
    base = base_generator if base_generator is not None else generator
    n_latent = w_plus.shape[1]
    kw: dict[str, Any] = {}
    new_w, new_g = w_plus.clone(), generator
    rows: tuple[int, ...] = ()
    render_from = 0.0
    if strength != 0:
        if source.kind == "mapper":
            mapper = loaders.mapper(source.checkpoint).to(device).eval()
            new_w = mapper_edit(w_plus, mapper, strength, source.rows)
            kw["mapper"] = mapper
            rows = row_indices(n_latent, source.rows)
        elif source.kind == "direction":
            raw = _squeeze_direction(torch.as_tensor(loaders.direction(source.checkpoint, source.key)))
            d = _direction_plus(raw, n_latent, w_plus) * source.scale
            d = d * _row_mask(n_latent, source.rows, d)
            new_w = direction_edit(w_plus, d, strength, source.rows)
            kw["direction"] = d
            rows = row_indices(n_latent, source.rows)
        elif source.kind == "nada":
            styled = loaders.generator(source.checkpoint).to(device).eval().requires_grad_(False)
            new_g = blend_generators(base, styled, strength)
            rows = tuple(range(n_latent))
        elif is_text:
            embedder = (loaders.clip or _default_clip(device))()
            embedder = embedder.to(device) if isinstance(embedder, nn.Module) else embedder
            sub = (lambda f, m: progress(0.9 * f, m))
            if source.kind == "text":
                delta, losses = optimise_text_residual(generator, w_plus, embedder, spec.target_text, config.text,
                                                       spec.source_text or None, sub)
                new_w = w_plus + strength * delta
                kw["direction"] = delta
                rows = row_indices(n_latent, config.text.rows)
            else:
                tuned, losses = train_nada(base, embedder, spec.source_text or config.nada.source_text,
                                           spec.target_text, config.nada, sub)
                new_g = blend_generators(base, tuned, strength)
                rows = tuple(range(n_latent))
            keys = _keyframe_indices(w_plus.shape[0], config.text.keyframes)
            src_text = spec.source_text or (config.text.source_text if source.kind == "text"
                                            else config.nada.source_text)
            scores = _clip_scores(embedder, render(generator, w_plus[keys], config.render_batch_size),
                                  render(new_g, new_w[keys], config.render_batch_size), spec.target_text, src_text)
            kw["clip_similarity"], kw["clip_margin"] = scores["similarity"], scores["margin"]
            kw["extra"] = {"losses": losses, "clip_direction_cos": scores["direction_cos"]}
            render_from = 0.9
        else:  # pragma: no cover - the catalogue only holds the kinds above
            raise ValueError(f"unknown edit kind {source.kind!r}")
    images = render(new_g, new_w, config.render_batch_size,
                    progress=lambda f, m: progress(render_from + (1 - render_from) * f, m))
    seconds = time.perf_counter() - t0
    logger.info("edit '%s' (%s, strength %.3g): %.3f s/frame", entry.name, source.kind, strength,
                seconds / max(1, w_plus.shape[0]))
    return EditResult(entry.name, source.kind, strength, new_w, new_g, images, w_plus, generator, rows,
                      checkpoint=source.checkpoint, note=source_note(source, loaders), seconds=seconds,
                      seconds_per_frame=seconds / max(1, w_plus.shape[0]), **kw)


def source_note(source: EditSource, loaders: EditLoaders | None = None) -> str:
    """What realises ``source`` with these loaders: their own description (e.g. a demo-pack network), else the
    catalogue's note about the published checkpoint."""
    own = loaders.note(source.checkpoint) if loaders is not None and loaders.note is not None else None
    return own or source.note


def _always(name: str) -> bool:
    return True


def _default_clip(device: torch.device) -> Callable[[], TextImageEmbedder]:
    def build() -> TextImageEmbedder:
        from .text import load_clip

        return load_clip(device=device)

    return build

"""GAN-inversion encoders: e4e, pSp and ReStyle (pSp / e4e), loading the authors' checkpoint files.

Architectures and state-dict names follow the upstream repositories so that ``strict=True`` loading works:

- e4e ``Encoder4Editing`` (omertov/encoder4editing ``models/encoders/psp_encoders.py``): IR-SE50 + FPN; one base code
  w0 from the coarsest map plus per-row offsets, W+ = w0 + [0, delta_1, ..., delta_{n-1}].
- pSp ``GradualStyleEncoder`` (eladrich/pixel2style2pixel): IR-SE50 + FPN, one map2style head per W+ row.
- ReStyle (yuval-alaluf/restyle-encoder): ``BackboneEncoder`` (pSp) / ``ProgressiveBackboneEncoder`` (e4e) heads on
  the last 16x16 map, or an FPN ``GradualStyleEncoder``, fed 6 channels [image, current reconstruction]; each step
  predicts a residual added to the previous codes, starting from ``latent_avg`` and the average image.

Files are ``{'state_dict': {'encoder.*', 'decoder.*'}, 'opts': dict | Namespace, 'latent_avg': [n_styles, 512]}``.
The encoders see 256x256 inputs; other sizes are resized inside with antialiased bilinear interpolation
(``F.interpolate(..., mode='bilinear', antialias=True, align_corners=False)``, the tensor twin of the
``transforms.Resize((256, 256))`` the upstream inference scripts apply to PIL images).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointFormatError
from .irse import IRSE_STAGES, GradualStyleBlock, IRSEBackbone, upsample_add
from .serialization import as_state, options_dict, strip_prefix

logger = logging.getLogger(__name__)

ENCODER_INPUT_SIZE = 256
COARSE_END, MIDDLE_END = 3, 7  # FPN heads: rows 0-2 read c3, rows 3-6 read p2, rows 7+ read p1

FPN_TYPES = ("GradualStyleEncoder", "Encoder4Editing")
BACKBONE_TYPES = ("BackboneEncoder", "ProgressiveBackboneEncoder")
PROGRESSIVE_TYPES = ("Encoder4Editing", "ProgressiveBackboneEncoder")
UNSUPPORTED_TYPES = ("ResNetGradualStyleEncoder", "ResNetBackboneEncoder", "ResNetProgressiveBackboneEncoder",
                     "BackboneEncoderUsingLastLayerIntoW", "BackboneEncoderUsingLastLayerIntoWPlus",
                     "SingleStyleCodeEncoder")


def resize_image(image: torch.Tensor, size: int | None) -> torch.Tensor:
    """[B,C,H,W] -> [B,C,size,size] (antialiased bilinear); unchanged when already that size or size is None."""
    if size is None or tuple(image.shape[-2:]) == (size, size):
        return image
    return F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


class StyleEncoder(nn.Module):
    """IR-SE50 encoder body plus map2style heads; the network stored under ``encoder.*``.

    ``forward(x [B,input_nc,H,W]) -> codes [B,n_styles,style_dim]`` (without latent_avg). ``fpn`` selects the pSp/e4e
    feature pyramid (heads on c3/p2/p1, with ``latlayer1``/``latlayer2``) instead of all heads on the last map;
    ``progressive`` makes rows 1.. offsets added to row 0 (e4e). ``stages`` / ``style_dim`` shrink the network for
    tests and demos (defaults: IR-SE50, 512); the FPN taps are the ends of stages 2, 3 and 4 (units 6, 20, 23 in
    IR-SE50, as upstream hard-codes).
    """

    def __init__(self, n_styles: int, input_nc: int = 3, fpn: bool = True, progressive: bool = False,
                 num_layers: int = 50, stages: Sequence[tuple[int, int, int]] | None = None, style_dim: int = 512):
        super().__init__()
        self.n_styles, self.input_nc, self.fpn, self.progressive = n_styles, input_nc, fpn, progressive
        self.style_dim = style_dim
        backbone = IRSEBackbone(input_nc, num_layers, stages=tuple(stages) if stages is not None else None)
        self.stages = backbone.stages
        # Attribute names as upstream (input_layer, body, styles, latlayer1/2), so state dicts load as they are.
        self.input_layer, self.body = backbone.input_layer, backbone.body
        ends = list(itertools.accumulate(n for _, _, n in self.stages))
        if fpn and len(self.stages) != 4:
            raise ValueError(f"The FPN encoders need 4 IR-SE stages, got {len(self.stages)}")
        self._taps = tuple(e - 1 for e in ends[1:4]) if fpn else (ends[-1] - 1,)
        width = self.stages[-1][1]  # 512 in IR-SE50
        spatial = [16 if (not fpn or i < COARSE_END) else 32 if i < MIDDLE_END else 64 for i in range(n_styles)]
        self.styles = nn.ModuleList(GradualStyleBlock(width, style_dim, s) for s in spatial)
        if fpn:
            self.latlayer1 = nn.Conv2d(self.stages[2][1], width, kernel_size=1, stride=1, padding=0)
            self.latlayer2 = nn.Conv2d(self.stages[1][1], width, kernel_size=1, stride=1, padding=0)

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.input_layer(x)
        taps = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self._taps:
                taps.append(x)
        return taps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.input_nc:
            raise ValueError(f"Expected an image batch [B,{self.input_nc},H,W], got {tuple(x.shape)}")
        if self.fpn:
            c1, c2, c3 = self._features(x)
            # p1/p2 only when some head reads them (upstream e4e skips them too for few rows)
            p2 = upsample_add(c3, self.latlayer1(c2)) if self.n_styles > COARSE_END else None
            p1 = upsample_add(p2, self.latlayer2(c1)) if self.n_styles > MIDDLE_END else None
            feats = [c3 if i < COARSE_END else p2 if i < MIDDLE_END else p1 for i in range(self.n_styles)]
        else:
            (last,) = self._features(x)
            feats = [last] * self.n_styles
        codes = torch.stack([head(f) for head, f in zip(self.styles, feats)], dim=1)  # [B, n_styles, 512]
        if self.progressive:
            # e4e: w = w0 repeated, w[:, i] += delta_i for i >= 1
            codes = torch.cat([codes[:, :1], codes[:, :1] + codes[:, 1:]], dim=1)
        return codes


class PSPEncoder(nn.Module):
    """e4e / pSp inversion: ``forward(image [B,3,H,W] in [-1,1]) -> w_plus [B,n_styles,512]``.

    As upstream ``pSp.forward``: codes + latent_avg when the file's ``start_from_latent_avg`` is set.
    """

    def __init__(self, encoder: StyleEncoder, latent_avg: torch.Tensor | None, start_from_latent_avg: bool,
                 encoder_type: str, input_size: int | None = ENCODER_INPUT_SIZE):
        super().__init__()
        self.encoder = encoder
        self.encoder_type = encoder_type
        self.start_from_latent_avg = start_from_latent_avg
        self.input_size = input_size
        self.n_latent = encoder.n_styles
        self.register_buffer("latent_avg", _latent_avg_rows(latent_avg, encoder.n_styles, encoder.style_dim))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        codes = self.encoder(resize_image(image, self.input_size))
        if self.start_from_latent_avg:
            codes = codes + self.latent_avg.unsqueeze(0)
        return codes


class ReStyleEncoder(nn.Module):
    """ReStyle iterative inversion with its own decoder (a tcve ``Generator`` from the file's ``decoder.*``).

    ``forward(image [B,3,H,W] in [-1,1], n_iters=5) -> w_plus [B,n_styles,512]``. Step 0 encodes
    [image, average image] and adds ``latent_avg``; step t>0 encodes [image, reconstruction of step t-1] and adds
    the previous codes. Reconstructions use the stored noise buffers ('const', upstream ``randomize_noise=False``)
    and are average-pooled to ``input_size`` (upstream ``face_pool``) before being fed back.
    """

    def __init__(self, encoder: StyleEncoder, decoder: nn.Module, latent_avg: torch.Tensor, encoder_type: str,
                 input_size: int = ENCODER_INPUT_SIZE):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.encoder_type = encoder_type
        self.input_size = input_size
        self.n_latent = encoder.n_styles
        self.register_buffer("latent_avg", _latent_avg_rows(latent_avg, encoder.n_styles, encoder.style_dim))

    def face_pool(self, image: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(image, (self.input_size, self.input_size))

    def decode(self, w_plus: torch.Tensor) -> torch.Tensor:
        """w_plus [B,n,512] -> decoder image [B,3,size,size] (stored noise)."""
        return self.decoder.synthesis(w_plus, noise_mode="const")

    def average_image(self) -> torch.Tensor:
        """decoder(latent_avg), pooled: [1,3,input_size,input_size]."""
        return self.face_pool(self.decode(self.latent_avg.unsqueeze(0)))

    def iterate(self, image: torch.Tensor, n_iters: int = 5) -> list[torch.Tensor]:
        """All intermediate codes: list of n_iters tensors [B,n_styles,512]."""
        if n_iters < 1:
            raise ValueError(f"n_iters must be >= 1, got {n_iters}")
        x = resize_image(image, self.input_size)
        recon = self.average_image().expand(x.shape[0], -1, -1, -1)
        codes = self.latent_avg.unsqueeze(0)
        out = []
        for step in range(n_iters):
            codes = self.encoder(torch.cat([x, recon], dim=1)) + codes
            out.append(codes)
            if step + 1 < n_iters:
                recon = self.face_pool(self.decode(codes))
        return out

    def forward(self, image: torch.Tensor, n_iters: int = 5) -> torch.Tensor:
        return self.iterate(image, n_iters)[-1]


def _latent_avg_rows(latent_avg: torch.Tensor | None, n_styles: int, style_dim: int = 512) -> torch.Tensor:
    """latent_avg as [n_styles, style_dim] (files store [style_dim] or the already repeated [n_styles, style_dim])."""
    if latent_avg is None:
        return torch.zeros(n_styles, style_dim)
    la = torch.as_tensor(latent_avg).float()
    if la.ndim == 1:
        la = la.unsqueeze(0)
    if la.ndim != 2 or la.shape[-1] != style_dim or la.shape[0] not in (1, n_styles):
        raise CheckpointFormatError(
            f"'latent_avg' has shape {tuple(la.shape)}; expected [{style_dim}] or [{n_styles}, {style_dim}].")
    return la.expand(n_styles, style_dim).clone()


def _infer_stages(esd: Mapping[str, torch.Tensor], opts: Mapping[str, Any]) -> tuple[tuple[int, int, int], ...]:
    """IR-SE stages (in_channel, depth, units): opts['stages'] if stored, else the IR-SE table entry matching the
    body's unit shapes, else grouped by depth changes (needs a depth change at every stage start)."""
    n_units = len({k.split(".")[1] for k in esd if k.startswith("body.")})
    shapes = [tuple(esd[f"body.{i}.res_layer.1.weight"].shape[:2]) for i in range(n_units)]  # (depth, in)
    if opts.get("stages"):
        return tuple(tuple(int(v) for v in st) for st in opts["stages"])
    for stages in IRSE_STAGES.values():
        expected = [(d, i if u == 0 else d) for i, d, n in stages for u in range(n)]
        if expected == shapes:
            return stages
    groups: list[list[int]] = []
    for depth, in_channel in shapes:
        if not groups or depth != groups[-1][1]:
            groups.append([in_channel, depth, 0])
        groups[-1][2] += 1
    if len(groups) != 4:
        raise CheckpointFormatError(
            f"Cannot tell the IR-SE stages of this {n_units}-unit encoder body; store them as opts['stages'].")
    return tuple((i, d, n) for i, d, n in groups)


def _encoder_config(esd: Mapping[str, torch.Tensor], opts: Mapping[str, Any]) -> tuple[str, int, int]:
    """(encoder_type, n_styles, input_nc) from opts and the encoder state-dict shapes."""
    if "input_layer.0.weight" not in esd or "styles.0.linear.weight" not in esd:
        raise CheckpointFormatError(
            "Not an IR-SE encoder checkpoint: no 'encoder.input_layer.0.weight' / 'encoder.styles.0.*' weights "
            "(ResNet34-backbone ReStyle files are not supported).")
    encoder_type = opts.get("encoder_type")
    if encoder_type in UNSUPPORTED_TYPES:
        raise CheckpointFormatError(f"Encoder type {encoder_type!r} is not supported; use an e4e, pSp or "
                                    "ReStyle (IR-SE50 backbone) checkpoint.")
    has_fpn = "latlayer1.weight" in esd
    if encoder_type is None:
        if has_fpn:
            raise CheckpointFormatError(
                "The checkpoint's opts do not name the encoder_type; cannot tell e4e from pSp.")
        encoder_type = "ProgressiveBackboneEncoder"
    if encoder_type not in FPN_TYPES + BACKBONE_TYPES:
        raise CheckpointFormatError(f"Unknown encoder_type {encoder_type!r} in the checkpoint's opts.")
    if (encoder_type in FPN_TYPES) != has_fpn:
        raise CheckpointFormatError(f"encoder_type {encoder_type!r} does not match the stored weights "
                                    f"({'with' if has_fpn else 'without'} FPN lateral layers).")
    n_styles = len({k.split(".")[1] for k in esd if k.startswith("styles.")})
    input_nc = int(esd["input_layer.0.weight"].shape[1])
    return encoder_type, n_styles, input_nc


def load_encoder(path_or_state: Any) -> nn.Module:
    """e4e / pSp / ReStyle encoder from an official file (or its loaded dict). Eval mode, float32.

    Returns ``PSPEncoder`` (image -> w_plus) for 3-channel encoders, ``ReStyleEncoder`` (image, n_iters -> w_plus)
    for 6-channel ReStyle encoders. Raises ``CheckpointFormatError`` for anything else.
    """
    obj = as_state(path_or_state)
    if not isinstance(obj, Mapping) or not isinstance(obj.get("state_dict"), Mapping):
        raise CheckpointFormatError(
            "Not a pSp/e4e/ReStyle encoder file: expected a dict with 'state_dict' (encoder.*, decoder.*), "
            "'opts' and 'latent_avg'.")
    sd = obj["state_dict"]
    opts = options_dict(obj.get("opts"))
    esd = strip_prefix(sd, "encoder.")
    if not esd:
        raise CheckpointFormatError("The checkpoint's state_dict has no 'encoder.*' weights (is it a generator "
                                    "or a StyleCLIP mapper file?).")
    encoder_type, n_styles, input_nc = _encoder_config(esd, opts)
    try:
        stages = _infer_stages(esd, opts)
    except KeyError as exc:
        raise CheckpointFormatError(f"Incomplete IR-SE encoder body: missing {exc.args[0]!r}.") from exc
    style_dim = int(esd["styles.0.linear.weight"].shape[0])
    input_size = int(opts.get("input_size", ENCODER_INPUT_SIZE))
    # Built on the meta device and filled by assignment: skips initialising ~100-250M parameters only to overwrite them.
    try:
        with torch.device("meta"):
            encoder = StyleEncoder(n_styles, input_nc, fpn=encoder_type in FPN_TYPES,
                                   progressive=encoder_type in PROGRESSIVE_TYPES, stages=stages, style_dim=style_dim)
    except ValueError as exc:
        raise CheckpointFormatError(f"Unsupported encoder layout: {exc}") from exc
    try:
        result = encoder.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in esd.items()},
                                         strict=False, assign=True)
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointFormatError(f"Encoder weights do not match a {encoder_type} with {n_styles} styles and "
                                    f"{input_nc} input channels: {str(exc).splitlines()[0]}") from exc
    # e4e/pSp load their encoder strictly upstream; ReStyle uses strict=False, so extra keys are only logged there.
    if result.missing_keys or (result.unexpected_keys and input_nc != 6):
        raise CheckpointFormatError(
            f"Encoder weights do not match a {encoder_type} with {n_styles} styles and {input_nc} input channels: "
            f"missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]}.")
    if result.unexpected_keys:
        logger.warning("Ignoring %d unexpected encoder keys (e.g. %s)", len(result.unexpected_keys),
                       result.unexpected_keys[:3])
    latent_avg = obj.get("latent_avg")
    if input_nc == 3:
        start = bool(opts.get("start_from_latent_avg", False))
        if start and latent_avg is None:
            raise CheckpointFormatError("The encoder was trained with start_from_latent_avg but the file has no "
                                        "'latent_avg'.")
        model: nn.Module = PSPEncoder(encoder, latent_avg, start, encoder_type, input_size)
    elif input_nc == 6:
        if latent_avg is None:
            raise CheckpointFormatError("ReStyle file without 'latent_avg': cannot form the starting average image.")
        from .stylegan2 import generator_from_state  # only ReStyle needs the decoder

        dsd = strip_prefix(sd, "decoder.")
        if not dsd:
            raise CheckpointFormatError("ReStyle file without 'decoder.*' weights.")
        la = _latent_avg_rows(latent_avg, n_styles, style_dim)
        decoder = generator_from_state(dsd, la[0])
        if decoder.n_latent != n_styles:
            raise CheckpointFormatError(f"Decoder has {decoder.n_latent} W+ rows but the encoder {n_styles}.")
        model = ReStyleEncoder(encoder, decoder, la, encoder_type, input_size)
    else:
        raise CheckpointFormatError(f"Unexpected encoder input channels: {input_nc} (expected 3 or 6).")
    logger.info("Loaded %s encoder: %d W+ rows, %d input channels", encoder_type, n_styles, input_nc)
    return model.eval().float()

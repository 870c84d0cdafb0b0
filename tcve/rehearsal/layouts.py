"""Random-weight files in the exact layouts the FFHQ checkpoints are published in (one writer per format).

Parameter names and shapes come from tcve's own modules, whose state dicts equal the upstream ones (they load the
published files with ``strict=True``; ``tests/fixtures/*_1024_keys.json`` hold the upstream key manifests, and
``tests/test_rehearsal.py`` compares against them). Tensors are float32 with each module's default initialisation, so
activations stay finite through the real networks. What each file holds:

- ``rosinality``: ``{'g_ema': Generator(1024, 512, 8, 2).state_dict(), 'latent_avg': [512]}`` (rosinality's
  ``convert_weight.py``, JoJoGAN's ``stylegan2-ffhq-config-f.pt``); the NADA style files hold ``g_ema`` only.
- ``psp`` (e4e): ``{'state_dict': {'encoder.*': Encoder4Editing(IR-SE50, 18 styles), 'decoder.*': g_ema},
  'opts': dict, 'latent_avg': [18, 512]}`` (e4e's coach saves ``vars(opts)``).
- ``styleclip-mapper``: ``{'state_dict': {'mapper.*': LevelsMapper, 'decoder.*': g_ema}, 'opts': dict}`` (StyleCLIP's
  mapper coach: the whole ``StyleCLIPMapper``, whose decoder is the generator, hence ~142 MB per mapper).
- ``npy`` (InterFaceGAN++): a float32 ``[1, 512]`` unit boundary (2,176 bytes with the header, as hosted).
- ``w-directions`` (StyleGANEX ``direction_dics.pt``): ``{name: float32 [1, 18, 512]}`` (its webUI adds
  ``scale * dics[name]`` to ``[1, 18, 512]`` W+ codes).
- ``torchvision``: ``torch.save(model.state_dict())`` of ``raft_large`` / ``raft_small`` / ``alexnet`` / ``vgg16``.
- ``open-clip``: ``open_clip.create_model('ViT-B-32').state_dict()`` as safetensors (``open_clip_model.safetensors``
  of ``timm/vit_base_patch32_clip_224.openai``; the tokenizer's BPE vocabulary ships in the open_clip wheel, and
  tcve builds the model from open_clip's built-in ``ViT-B-32`` config, so no other file of that repo is read).

The LPIPS linear heads are not a checkpoint: they ship in the ``lpips`` wheel (``lpips/weights/v0.1/alex.pth``).
``write_lpips_heads`` writes random ones in that layout for ``tcve.lpips_torch`` on machines without lpips.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import checkpoints
from ..checkpoints import Checkpoint

# StyleCLIP mappers trained without their fine group (PTI's scripts/pti_styleclip.py meta data)
MAPPERS_WITHOUT_FINE = {"afro", "angry", "bobcut", "bowlcut", "curly_hair", "mohawk", "surprised"}
STYLEGANEX_DIRECTIONS = ("smile", "open_eye", "open_mouth", "pose", "reduce_age", "glasses", "light_hair_color",
                         "slender")
GENERATOR_SIZE = 1024


class _Seed:
    """Seeds torch's global RNG (module initialisers use it) and restores it afterwards."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __enter__(self) -> None:
        self._state = torch.random.get_rng_state()
        torch.manual_seed(self.seed)

    def __exit__(self, *exc: object) -> None:
        torch.random.set_rng_state(self._state)


def _save(obj: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path


def generator_state(seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """(g_ema state dict of a random config-f 1024 generator, its latent_avg [512])."""
    from ..models.stylegan2 import Generator

    with _Seed(seed):
        g = Generator(GENERATOR_SIZE, 512, 8, channel_multiplier=2)
        latent_avg = g.mean_latent(4096, seed=seed)
    return g.state_dict(), latent_avg


def write_rosinality_generator(path: Path, seed: int, with_latent_avg: bool = True) -> Path:
    sd, latent_avg = generator_state(seed)
    return _save({"g_ema": sd, "latent_avg": latent_avg} if with_latent_avg else {"g_ema": sd}, path)


def write_e4e(path: Path, seed: int) -> Path:
    from ..models.encoders import StyleEncoder

    with _Seed(seed):
        encoder = StyleEncoder(18, 3, fpn=True, progressive=True, num_layers=50)
    decoder, latent_avg = generator_state(seed + 1)
    state = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    del encoder
    state.update({f"decoder.{k}": v for k, v in decoder.items()})
    # The fields e4e's inference reads, with the values of its FFHQ training run.
    opts = {"exp_dir": "", "dataset_type": "ffhq_encode", "encoder_type": "Encoder4Editing", "batch_size": 8,
            "test_batch_size": 4, "start_from_latent_avg": True, "lpips_type": "alex", "lpips_lambda": 0.8,
            "id_lambda": 0.1, "l2_lambda": 1.0, "stylegan_size": GENERATOR_SIZE, "checkpoint_path": None,
            "w_discriminator_lambda": 0.1, "progressive_steps": [0, 20000, 22000, 24000, 26000, 28000, 30000, 32000,
                                                                  34000, 36000, 38000, 40000, 42000, 44000, 46000,
                                                                  48000, 50000, 52000],
            "device": "cuda:0"}
    return _save({"state_dict": state, "opts": opts, "latent_avg": latent_avg[None].repeat(18, 1)}, path)


def write_styleclip_mapper(path: Path, seed: int, name: str) -> Path:
    from ..models.mapper import LevelsMapper

    no_fine = name in MAPPERS_WITHOUT_FINE
    with _Seed(seed):
        mapper = LevelsMapper(no_fine=no_fine)
    decoder, _ = generator_state(seed + 1)
    state = {f"mapper.{k}": v for k, v in mapper.state_dict().items()}
    state.update({f"decoder.{k}": v for k, v in decoder.items()})
    opts = {"exp_dir": "", "mapper_type": "LevelsMapper", "no_coarse_mapper": False, "no_medium_mapper": False,
            "no_fine_mapper": no_fine, "latents_train_path": "train_faces.pt", "latents_test_path": "test_faces.pt",
            "batch_size": 2, "learning_rate": 0.5, "optim_name": "ranger", "id_lambda": 0.1, "clip_lambda": 1.0,
            "latent_l2_lambda": 0.8, "stylegan_weights": "stylegan2-ffhq-config-f.pt", "stylegan_size": 1024,
            "description": name.replace("_", " "), "checkpoint_path": None}
    return _save({"state_dict": state, "opts": opts}, path)


def _unit(shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal(shape).astype(np.float32)
    return v / np.linalg.norm(v.reshape(-1, v.shape[-1]), axis=-1).reshape(*shape[:-1], 1)


def write_interfacegan_boundary(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, _unit((1, 512), seed))
    return path


def write_styleganex_directions(path: Path, seed: int) -> Path:
    dics = {k: torch.from_numpy(_unit((1, 18, 512), seed + i)) * 5.0 for i, k in enumerate(STYLEGANEX_DIRECTIONS)}
    return _save(dics, path)


def write_torchvision(path: Path, seed: int, model: str) -> Path:
    import torchvision.models as tvm
    from torchvision.models.optical_flow import raft_large, raft_small

    builders: dict[str, Callable[[], torch.nn.Module]] = {
        "raft-large": raft_large, "raft-small": raft_small, "alexnet": tvm.alexnet, "vgg16": tvm.vgg16}
    with _Seed(seed):
        net = builders[model]()
    return _save(net.state_dict(), path)


def write_open_clip(path: Path, seed: int) -> Path:
    import open_clip
    from safetensors.torch import save_file

    with _Seed(seed):
        model = open_clip.create_model("ViT-B-32", pretrained=None, force_quick_gelu=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def write_lpips_heads(path: Path, seed: int) -> Path:
    """Random LPIPS-alex linear heads in the lpips wheel's layout (``lin<k>.model.1.weight`` [1, C, 1, 1], >= 0)."""
    rng = torch.Generator().manual_seed(seed)
    heads = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=rng) * 0.1
             for k, c in enumerate((64, 192, 384, 256, 256))}
    return _save(heads, path)


def _torchvision_model(ckpt: Checkpoint) -> str:
    if ckpt.kind == "flow":
        return "raft-small" if ckpt.name.startswith("raft-small") else "raft-large"
    return "alexnet" if "alex" in ckpt.name else "vgg16"


def write_entry(ckpt: Checkpoint, path: Path, seed: int) -> Path:
    """Write registry entry ``ckpt`` with random weights at ``path`` in its published layout."""
    if ckpt.format == "rosinality":
        return write_rosinality_generator(path, seed, with_latent_avg=ckpt.kind != "nada")
    if ckpt.format == "psp" and ckpt.name.startswith("e4e"):
        return write_e4e(path, seed)
    if ckpt.format == "styleclip-mapper":
        return write_styleclip_mapper(path, seed, Path(ckpt.filename).stem)
    if ckpt.format == "npy" and ckpt.name.startswith("interfacegan"):
        return write_interfacegan_boundary(path, seed)
    if ckpt.format == "w-directions":
        return write_styleganex_directions(path, seed)
    if ckpt.format == "torchvision":
        return write_torchvision(path, seed, _torchvision_model(ckpt))
    if ckpt.format == "open-clip":
        return write_open_clip(path, seed)
    raise ValueError(f"no rehearsal writer for '{ckpt.name}' (format {ckpt.format})")


def entry_seed(name: str) -> int:
    """A stable seed per registry name (files are reproducible)."""
    return int.from_bytes(name.encode()[:7].ljust(7, b"\0"), "little") % (2 ** 31 - 1) + len(name)


def supported(name: str) -> bool:
    """Whether the rehearsal can write entry ``name`` (hosted, and a writer exists for its format)."""
    ckpt = checkpoints.get(name)
    if not (ckpt.repo_id or ckpt.url):
        return False  # local-only files: the rehearsal reproduces what a Space can download
    return ckpt.format in {"rosinality", "styleclip-mapper", "w-directions", "torchvision", "open-clip"} or (
        ckpt.format == "psp" and ckpt.name.startswith("e4e")) or (
        ckpt.format == "npy" and ckpt.name.startswith("interfacegan"))


__all__ = ["write_entry", "entry_seed", "supported", "write_lpips_heads", "generator_state",
           "MAPPERS_WITHOUT_FINE", "STYLEGANEX_DIRECTIONS"]

"""``load_generator``: a StyleGAN2 generator from any published file layout (rosinality, NADA, pSp family, NVlabs).

Its own module so that the architecture (``stylegan2``) and the NVlabs pickle reader (``nvlabs``, which builds that
architecture) never import each other: this module depends on both.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..errors import CheckpointFormatError
from .nvlabs import load_nvlabs_generator
from .serialization import load_torch_file
from .stylegan2 import Generator, generator_from_state, pick_generator_state

_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."  # pickled magic number of pre-1.6 torch.save


def is_nvlabs_pickle(path: str | os.PathLike[str]) -> bool:
    """True for raw pickles (NVlabs network snapshots); torch.save files are zip archives or legacy-magic pickles."""
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_TORCH_MAGIC))
    return not head.startswith(b"PK") and not head.startswith(_LEGACY_TORCH_MAGIC)


def load_generator(path_or_state: Any, key: str | None = None) -> Generator:
    """Generator from a rosinality / NADA / pSp-family file, a bare state dict, or an NVlabs ``.pkl`` (G_ema)."""
    if not isinstance(path_or_state, Mapping):
        if is_nvlabs_pickle(path_or_state):
            return load_nvlabs_generator(path_or_state, key=key or "G_ema")
        obj = load_torch_file(path_or_state)
        if not isinstance(obj, Mapping):
            raise CheckpointFormatError(f"Expected a dict in {os.fspath(path_or_state)}, got {type(obj).__name__}.")
    else:
        obj = path_or_state
    sd, latent_avg = pick_generator_state(obj, key)
    return generator_from_state(sd, latent_avg)

"""Reading checkpoint files without executing code from them.

``torch.load(weights_only=True)`` refuses every global that is not a tensor-rebuild helper; the field's files
store argparse ``Namespace`` objects as options (rosinality training files, some pSp-family files), so that
one class is allow-listed. NVlabs ``.pkl`` files go through ``tcve.models.nvlabs`` instead.
"""

from __future__ import annotations

import argparse
import io
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointFormatError

PathOrState = "str | os.PathLike[str] | Mapping[str, Any]"

_SAFE_GLOBALS = [argparse.Namespace]


def load_torch_file(path: str | os.PathLike[str] | io.BytesIO) -> Any:
    """``torch.load`` on CPU with ``weights_only=True`` and a small allow-list; clear errors on failure."""
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        raise CheckpointFormatError(refusal_message(path, exc)) from exc


# torch's refusal names the blocked object like "unsupported GLOBAL posix.system whose module ..."
_BLOCKED_GLOBAL = re.compile(r"GLOBAL\s+([\w.]+)")


def refusal_message(path: str | os.PathLike[str] | io.BytesIO, exc: BaseException) -> str:
    """Our own message for a file torch would not read. Never torch's advice to retry with ``weights_only=False``:
    for an untrusted file that advice means running its code."""
    name = Path(path).name if isinstance(path, (str, os.PathLike)) else "(in memory)"
    text = str(exc)
    blocked = _BLOCKED_GLOBAL.search(text)
    if blocked:
        return (f"Refused to load checkpoint '{name}': it stores a Python object ({blocked.group(1)}) besides "
                "tensors, and tcve never runs code from a checkpoint. Use the published file of this checkpoint "
                "(`python -m tcve list checkpoints` shows where it comes from); if you made the file yourself, "
                "save a plain state dict (torch.save(model.state_dict(), path)).")
    # torch's own first line may be its weights_only advice: keep only the error type then.
    first = "" if "weights_only" in text else (text.strip().splitlines() or [""])[0]
    return (f"Could not read checkpoint '{name}' ({type(exc).__name__}{': ' + first if first else ''}): "
            "the file is corrupt, truncated or not a PyTorch checkpoint. Delete it and fetch it again.")


def as_state(path_or_state: Any) -> Any:
    """A loaded checkpoint object: ``path_or_state`` itself when it is already a mapping, else the file's content."""
    if isinstance(path_or_state, Mapping):
        return path_or_state
    return load_torch_file(path_or_state)


def options_dict(opts: Any) -> dict[str, Any]:
    """The ``opts`` entry of a pSp-family file as a plain dict (files store a dict or an argparse Namespace)."""
    if opts is None:
        return {}
    if isinstance(opts, argparse.Namespace):
        return dict(vars(opts))
    if isinstance(opts, Mapping):
        return dict(opts)
    raise CheckpointFormatError(f"Unexpected 'opts' entry of type {type(opts).__name__}")


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``state_dict`` under ``prefix`` (e.g. ``'encoder.'``), with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}

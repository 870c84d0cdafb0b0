"""NVlabs stylegan2-ada-pytorch network pickles, read without running their code.

Their ``.pkl`` files embed the Python source of every network class and re-execute it on unpickling
(``torch_utils.persistence``). Here a restricted unpickler turns each persistent object into a plain
``PersistentRecord`` (class name + the module's ``__dict__``), rebuilds tensors only through torch's own
rebuild helpers (storages via ``torch.load(weights_only=True)``) and refuses every other global. The
``G_ema`` record is then converted to the rosinality parameter layout and loaded into ``tcve``'s Generator.
"""

from __future__ import annotations

import collections
import io
import logging
import math
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import CheckpointFormatError
from .layers import make_kernel
from .stylegan2 import Generator, GeneratorConfig, rosinality_channels

logger = logging.getLogger(__name__)


@dataclass
class PersistentRecord:
    """What a ``torch_utils.persistence`` object held: its class name and its ``__dict__`` (never instantiated)."""

    class_name: str
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def init_kwargs(self) -> dict[str, Any]:
        return dict(self.state.get("_init_kwargs") or {})

    def child(self, name: str) -> "PersistentRecord":
        sub = (self.state.get("_modules") or {}).get(name)
        if not isinstance(sub, PersistentRecord):
            raise CheckpointFormatError(f"NVlabs {self.class_name} has no sub-network {name!r}.")
        return sub

    def has_child(self, name: str) -> bool:
        return isinstance((self.state.get("_modules") or {}).get(name), PersistentRecord)

    def tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Flattened parameters and buffers, keyed like ``nn.Module.state_dict``."""
        out: dict[str, torch.Tensor] = {}
        for group in ("_parameters", "_buffers"):
            for k, v in (self.state.get(group) or {}).items():
                if isinstance(v, torch.Tensor):
                    out[prefix + k] = v.detach()
        for k, sub in (self.state.get("_modules") or {}).items():
            if isinstance(sub, PersistentRecord):
                out.update(sub.tensors(f"{prefix}{k}."))
        return out


def _reconstruct_record(meta: Mapping[str, Any]) -> PersistentRecord:
    if not isinstance(meta, Mapping) or meta.get("type") != "class":
        raise CheckpointFormatError("Unsupported NVlabs persistent object (expected type 'class').")
    state = meta.get("state") or {}
    if not isinstance(state, Mapping):
        raise CheckpointFormatError("Unsupported NVlabs persistent object state.")
    return PersistentRecord(str(meta.get("class_name")), dict(state))


def _load_storage_from_bytes(data: bytes) -> Any:
    # torch.storage._load_from_bytes would call a plain torch.load: keep it to tensor data only.
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _rebuild_from_type_v2(func: Any, new_type: Any, args: tuple, state: Any) -> Any:
    if func not in _TENSOR_REBUILDERS or new_type not in (torch.Tensor, torch.nn.Parameter):
        raise CheckpointFormatError("NVlabs pickle rebuilds a tensor through an unexpected function or type.")
    return torch._tensor._rebuild_from_type_v2(func, new_type, args, state)


def _numpy_allowed() -> dict[tuple[str, str], Any]:
    import numpy as np

    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed core -> _core; old pickles name either
    scalar = core.multiarray.scalar
    return {("numpy.core.multiarray", "scalar"): scalar, ("numpy._core.multiarray", "scalar"): scalar,
            ("numpy", "dtype"): np.dtype}


_TENSOR_REBUILDERS = {torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter}
if hasattr(torch._utils, "_rebuild_parameter_with_state"):
    _TENSOR_REBUILDERS.add(torch._utils._rebuild_parameter_with_state)

_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_record,
    ("dnnlib.util", "EasyDict"): dict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): getattr(torch._utils, "_rebuild_parameter_with_state", None),
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    ("torch._tensor", "Tensor"): torch.Tensor,
    ("torch", "Tensor"): torch.Tensor,
    ("torch", "Size"): torch.Size,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        target = _ALLOWED.get((module, name)) or _numpy_allowed().get((module, name))
        if target is None:
            raise CheckpointFormatError(
                f"Refusing to load NVlabs pickle: it references '{module}.{name}', which tcve does not allow "
                "(only network records, tensors and plain containers are read).")
        return target


def load_nvlabs_pickle(path_or_file: str | os.PathLike[str] | io.IOBase | bytes) -> dict[str, Any]:
    """Top-level dict of an NVlabs snapshot pickle, persistent networks as ``PersistentRecord``."""
    try:
        if isinstance(path_or_file, bytes):
            obj = _RestrictedUnpickler(io.BytesIO(path_or_file)).load()
        elif isinstance(path_or_file, (str, os.PathLike)):
            with open(path_or_file, "rb") as f:
                obj = _RestrictedUnpickler(f).load()
        else:
            obj = _RestrictedUnpickler(path_or_file).load()
    except (CheckpointFormatError, FileNotFoundError):
        raise
    except Exception as exc:  # truncated / corrupt pickles raise many types
        raise CheckpointFormatError(f"Could not read NVlabs pickle: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, Mapping):
        raise CheckpointFormatError(f"NVlabs pickle holds a {type(obj).__name__}, expected a dict of networks.")
    return dict(obj)


# ----------------------------------------------------------------------------- conversion

def _attr(rec: PersistentRecord, name: str, default: Any = None) -> Any:
    value = rec.state.get(name, default)
    return value.item() if hasattr(value, "item") and not isinstance(value, torch.Tensor) else value


def nvlabs_to_rosinality(g: PersistentRecord) -> tuple[dict[str, torch.Tensor], torch.Tensor | None, GeneratorConfig]:
    """NVlabs Generator record -> (rosinality state dict, w_avg, config)."""
    if g.class_name != "Generator":
        raise CheckpointFormatError(f"Expected an NVlabs Generator, got {g.class_name}.")
    kw = g.init_kwargs
    z_dim, c_dim, w_dim = (int(_attr(g, n, kw.get(n))) for n in ("z_dim", "c_dim", "w_dim"))
    res = int(_attr(g, "img_resolution", kw.get("img_resolution")))
    if c_dim != 0:
        raise CheckpointFormatError("Conditional NVlabs generators (c_dim > 0) are not supported.")
    if z_dim != w_dim:
        raise CheckpointFormatError(f"NVlabs generator with z_dim={z_dim} != w_dim={w_dim} is not supported.")
    if int(_attr(g, "img_channels", kw.get("img_channels", 3))) != 3:
        raise CheckpointFormatError("Only RGB NVlabs generators are supported.")
    mapping, synthesis = g.child("mapping"), g.child("synthesis")
    t = g.tensors()
    log_res = int(math.log2(res))
    mapping_kw = kw.get("mapping_kwargs") or {}
    # attributes the forward pass uses win over init kwargs (legacy-converted pickles may lack the latter)
    n_mlp = int(_attr(mapping, "num_layers", mapping_kw.get("num_layers", 8)))
    lr_mlp = float(_attr(mapping.child("fc0"), "bias_gain", mapping_kw.get("lr_multiplier", 0.01)))

    sd: dict[str, torch.Tensor] = {}
    for i in range(n_mlp):
        sd[f"style.{i + 1}.weight"] = t[f"mapping.fc{i}.weight"]
        sd[f"style.{i + 1}.bias"] = t[f"mapping.fc{i}.bias"]

    def layer(src: str, dst: str, noise_idx: int) -> None:
        sd[f"{dst}.conv.weight"] = t[f"{src}.weight"][None]
        sd[f"{dst}.conv.modulation.weight"] = t[f"{src}.affine.weight"]
        sd[f"{dst}.conv.modulation.bias"] = t[f"{src}.affine.bias"]
        sd[f"{dst}.noise.weight"] = t[f"{src}.noise_strength"].reshape(1)
        sd[f"{dst}.activate.bias"] = t[f"{src}.bias"]
        sd[f"noises.noise_{noise_idx}"] = t[f"{src}.noise_const"][None, None]

    def torgb(src: str, dst: str) -> None:
        sd[f"{dst}.conv.weight"] = t[f"{src}.weight"][None]
        sd[f"{dst}.conv.modulation.weight"] = t[f"{src}.affine.weight"]
        sd[f"{dst}.conv.modulation.bias"] = t[f"{src}.affine.bias"]
        sd[f"{dst}.bias"] = t[f"{src}.bias"].reshape(1, -1, 1, 1)

    clamps, channels = set(), {}
    expected_filter = make_kernel([1, 3, 3, 1])
    try:
        for r in range(2, log_res + 1):
            block = synthesis.child(f"b{2 ** r}")
            if _attr(block, "architecture", "skip") != "skip":
                raise CheckpointFormatError(
                    f"NVlabs synthesis architecture {_attr(block, 'architecture')!r} is not supported (only 'skip').")
            f = t[f"synthesis.b{2 ** r}.resample_filter"]
            f2 = f[None, :] * f[:, None] if f.ndim == 1 else f
            if f2.shape != expected_filter.shape or not torch.allclose(f2 / f2.sum(), expected_filter):
                raise CheckpointFormatError("Only the [1,3,3,1] resample filter is supported.")
            for name in ("conv0", "conv1", "torgb"):
                if block.has_child(name):
                    sub = block.child(name)
                    clamps.add(_attr(sub, "conv_clamp"))
                    if name != "torgb" and not _attr(sub, "use_noise", True):
                        raise CheckpointFormatError("NVlabs generators without noise inputs are not supported.")
            if r == 2:
                sd["input.input"] = t["synthesis.b4.const"][None]
                channels[4] = int(sd["input.input"].shape[1])
                layer("synthesis.b4.conv1", "conv1", 0)
                torgb("synthesis.b4.torgb", "to_rgb1")
            else:
                k = r - 3
                layer(f"synthesis.b{2 ** r}.conv0", f"convs.{2 * k}", 2 * k + 1)
                layer(f"synthesis.b{2 ** r}.conv1", f"convs.{2 * k + 1}", 2 * k + 2)
                torgb(f"synthesis.b{2 ** r}.torgb", f"to_rgbs.{k}")
                channels[2 ** r] = int(t[f"synthesis.b{2 ** r}.conv0.weight"].shape[0])
    except KeyError as exc:
        raise CheckpointFormatError(f"NVlabs generator lacks tensor {exc.args[0]!r}.") from exc
    if len(clamps) > 1:
        raise CheckpointFormatError(f"Per-layer conv_clamp values {clamps} are not supported.")
    conv_clamp = clamps.pop() if clamps else None

    standard = all(rosinality_channels(2)[r] == c for r, c in channels.items())
    cm_channels = None if standard else tuple(sorted(channels.items()))
    config = GeneratorConfig(res, w_dim, n_mlp, 2, lr_mlp, cm_channels,
                             float(conv_clamp) if conv_clamp is not None else None)
    w_avg = t.get("mapping.w_avg")
    return sd, w_avg, config


def load_nvlabs_generator(path_or_file: Any, key: str = "G_ema") -> Generator:
    """tcve Generator (eval, float32) equivalent to the ``key`` network of an NVlabs snapshot pickle."""
    data = load_nvlabs_pickle(path_or_file)
    if key not in data or not isinstance(data[key], PersistentRecord):
        raise CheckpointFormatError(f"NVlabs pickle has no network {key!r} (entries: {sorted(map(str, data))}).")
    sd, w_avg, config = nvlabs_to_rosinality(data[key])
    g = config.build()
    # Blur / upsample kernels are buffers in the rosinality layout: keep those of the freshly built model.
    full = dict(g.state_dict())
    missing = [k for k in full if k not in sd and not k.endswith("kernel")]
    if missing:
        raise CheckpointFormatError(f"NVlabs conversion left parameters unset: {missing[:5]}")
    full.update({k: v.float() for k, v in sd.items()})
    g.load_state_dict(full, strict=True)
    if w_avg is not None:
        g.latent_avg.copy_(w_avg.float())
    else:
        logger.info("NVlabs mapping has no w_avg; using the mean of 4096 mapped z.")
        g.latent_avg.copy_(g.mean_latent())
    return g.eval().float()

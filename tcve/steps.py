"""Optimisation-step plumbing shared by PTI, phases 1-2 and stitching: Adam without host reads, a compile wrapper that
falls back to eager, and op / host-sync counting with ``torch.profiler`` (the sync test and ``bench/``).

Why Adam matters: torch's default (single-tensor / foreach, not capturable) Adam keeps its step counter on the CPU
and reads it with ``.item()`` once per parameter per step; on a GPU that also serialises the step with the host.
The fused implementation keeps the counter on the parameters' device and runs one kernel per parameter group, so a
step needs no host read at all and can be captured (CUDA graphs, ``torch.compile``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

logger = logging.getLogger(__name__)

__all__ = ["make_adam", "maybe_compile", "OpCounts", "count_ops", "SYNC_OPS"]

# Host reads of a tensor's value (``.item()``, ``bool(t)``, ``float(t)``, Python branching on a tensor) all end here.
# Only reads made from Python count: a CPU kernel reading its own CPU scalar (the CPU fused Adam kernel reads its
# step counter) involves no device; on CUDA that kernel reads the counter on the device, and real waits show up as
# runtime synchronisation events (counted separately).
SYNC_OPS = ("aten::_local_scalar_dense",)
_CUDA_SYNC_MARKERS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")


def make_adam(params: Iterable[torch.nn.Parameter], lr: float, fused: bool = True) -> torch.optim.Adam:
    """Adam with torch's default betas/eps. ``fused=True``: the fused kernel (CPU and CUDA floating parameters), else
    capturable on CUDA; ``fused=False``: torch's default implementation (reads its step counter on the host)."""
    params = [p for p in params]
    if fused and params:
        kinds = {p.device.type for p in params}
        floating = all(p.is_floating_point() for p in params)
        if floating and len(kinds) == 1 and kinds <= {"cpu", "cuda"}:
            return torch.optim.Adam(params, lr=lr, fused=True)
        if kinds == {"cuda"}:
            return torch.optim.Adam(params, lr=lr, capturable=True)
    return torch.optim.Adam(params, lr=lr)


def maybe_compile(fn: Callable[..., Any], enabled: bool) -> Callable[..., Any]:
    """``torch.compile(fn)`` when enabled and available; if compiling fails (no compiler on the host, ZeroGPU's
    restricted workers) the first call logs why and every call runs ``fn`` eagerly from then on."""
    if not enabled:
        return fn
    try:
        compiled = torch.compile(fn)
    except Exception as exc:  # torch.compile unavailable on this build/platform
        logger.warning("torch.compile unavailable (%s); running eagerly", exc)
        return fn
    state = {"fn": compiled}

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return state["fn"](*args, **kwargs)
        except Exception as exc:
            if state["fn"] is fn:
                raise
            logger.warning("torch.compile failed (%s: %s); running eagerly", type(exc).__name__, exc)
            state["fn"] = fn
            return fn(*args, **kwargs)

    return call


@dataclass(frozen=True)
class OpCounts:
    """What a profiled call did: ``ops`` leaf aten ops (the CPU-side launch count: each leaf op is at least one
    kernel on a GPU), ``kernels`` CUDA kernels (0 on CPU), ``syncs`` host reads of tensor values, ``cuda_syncs``
    stream/device/event synchronisations."""

    ops: int
    kernels: int
    syncs: int
    cuda_syncs: int

    def __sub__(self, other: OpCounts) -> OpCounts:
        return OpCounts(self.ops - other.ops, self.kernels - other.kernels, self.syncs - other.syncs,
                        self.cuda_syncs - other.cuda_syncs)

    def per(self, n: float) -> dict[str, float]:
        return {"ops": self.ops / n, "kernels": self.kernels / n, "syncs": self.syncs / n,
                "cuda_syncs": self.cuda_syncs / n}


def _called_from_python(event: Any) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("aten::") and parent.name != "aten::item":
            return False
        parent = parent.cpu_parent
    return True


def count_ops(fn: Callable[[], Any]) -> OpCounts:
    """Run ``fn()`` under ``torch.profiler`` and count leaf aten ops, CUDA kernels and host synchronisations."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        fn()
    ops = kernels = syncs = cuda_syncs = 0
    for event in prof.events():
        name = event.name
        if name in SYNC_OPS and _called_from_python(event):
            syncs += 1
        if any(m in name for m in _CUDA_SYNC_MARKERS):
            cuda_syncs += 1
        if getattr(event, "device_type", None) == torch.autograd.DeviceType.CUDA:
            kernels += 1
        elif name.startswith("aten::") and not any(c.name.startswith("aten::") for c in event.cpu_children):
            ops += 1
    return OpCounts(ops, kernels, syncs, cuda_syncs)

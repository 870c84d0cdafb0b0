"""Content-addressed cache of stage outputs (inversions, edits): a second edit of the same clip skips inversion.

Key = sha256 over the clip's content (frame pixels or file bytes), the stage settings (a dataclass or mapping,
serialised as canonical JSON) and the names of the checkpoints the stage used. Entries hold tensors only
(nested dicts / lists of tensors, with Python numbers and strings as leaves), written with ``torch.save`` to a
temporary file and renamed into place (readers never see half a file), and read back with ``weights_only=True``.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = ["ENV_CACHE_DIR", "ENV_CACHE_MAX_GB", "default_cache_dir", "default_max_bytes", "hash_frames", "hash_file",
           "cache_key", "StageCache"]

ENV_CACHE_DIR = "TCVE_CACHE_DIR"
ENV_CACHE_MAX_GB = "TCVE_CACHE_MAX_GB"
DEFAULT_MAX_GB = 5.0  # about 40 PTI-tuned 1024 px inversions; the least recently used entries go first
_FORMAT_VERSION = 1  # bump when a stage changes what it stores: old entries then miss instead of mis-loading


def default_cache_dir() -> Path:
    """``$TCVE_CACHE_DIR``, else ``$XDG_CACHE_HOME/tcve`` (``~/.cache/tcve``)."""
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tcve"


def default_max_bytes() -> int | None:
    """``$TCVE_CACHE_MAX_GB`` (0: no cap), else ``DEFAULT_MAX_GB``, in bytes."""
    gb = float(os.environ.get(ENV_CACHE_MAX_GB) or DEFAULT_MAX_GB)
    return int(gb * 2**30) if gb > 0 else None


def hash_frames(frames: np.ndarray | torch.Tensor | Sequence[np.ndarray] | Iterable[np.ndarray]) -> str:
    """sha256 hex digest of a clip's pixels: shape, dtype and bytes of every frame, in order.

    Accepts a stack ``[T,H,W,3]`` uint8 (``frame`` vocabulary), a float ``image`` tensor ``[T,3,H,W]``, or any
    iterable of frames (hashed incrementally, so a decoder's generator need not be materialised).
    """
    digest = hashlib.sha256(b"tcve-frames-v1")
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().contiguous().numpy()
    items = frames if not isinstance(frames, np.ndarray) else list(frames)
    count = 0
    for frame in items:
        arr = np.ascontiguousarray(frame.detach().cpu().numpy() if isinstance(frame, torch.Tensor) else frame)
        digest.update(f"{arr.shape}|{arr.dtype.str}|".encode())
        digest.update(arr.tobytes())
        count += 1
    digest.update(f"n={count}".encode())
    return digest.hexdigest()


def hash_file(path: str | os.PathLike[str]) -> str:
    """sha256 hex digest of a file's bytes (e.g. the uploaded video itself)."""
    digest = hashlib.sha256(b"tcve-file-v1")
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _canonical(obj: Any) -> Any:
    """JSON-able, order-independent form of settings (dataclasses, mappings, tuples, enums, paths, numbers)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"__type__": type(obj).__name__,
                **{f.name: _canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (os.PathLike,)):
        return os.fspath(obj)
    if isinstance(obj, float):
        return repr(obj)  # exact: 3e-4 and 0.0003 are the same key, 0.1 and 0.10000001 are not
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    if isinstance(obj, (np.generic,)):
        return _canonical(obj.item())
    raise TypeError(f"cannot use a {type(obj).__name__} in a cache key")


def cache_key(content_hash: str, settings: Any = None, checkpoints: Sequence[str] = (), stage: str = "") -> str:
    """sha256 hex key of (stage, content hash, settings, checkpoint names)."""
    payload = {"v": _FORMAT_VERSION, "stage": stage, "content": content_hash, "settings": _canonical(settings),
               "checkpoints": [str(c) for c in checkpoints]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _check_tensors_only(obj: Any, where: str = "entry") -> None:
    if isinstance(obj, torch.Tensor) or obj is None or isinstance(obj, (str, int, float, bool)):
        return
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: keys must be strings, got {type(k).__name__}")
            _check_tensors_only(v, f"{where}.{k}")
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_tensors_only(v, f"{where}[{i}]")
        return
    raise TypeError(f"{where}: the cache stores tensors (and plain numbers/strings) only, got {type(obj).__name__}")


_DEFAULT = object()


class StageCache:
    """A folder of ``<stage>/<key[:2]>/<key>.pt`` entries, at most ``max_bytes`` in all (None: no cap).

    Over the cap, the least recently used entries are deleted after each save (a hit counts as a use: it touches
    the file's modification time, which is what eviction orders by)."""

    def __init__(self, root: str | os.PathLike[str] | None = None, enabled: bool = True,
                 max_bytes: int | None | object = _DEFAULT):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.enabled = enabled
        self.max_bytes: int | None = default_max_bytes() if max_bytes is _DEFAULT else max_bytes  # type: ignore

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key[:2] / f"{key}.pt"

    def contains(self, stage: str, key: str) -> bool:
        return self.enabled and self.path(stage, key).is_file()

    def load(self, stage: str, key: str) -> dict[str, Any] | None:
        """The stored entry, or None (missing, disabled, or unreadable: a bad entry is removed and recomputed)."""
        if not self.enabled:
            return None
        path = self.path(stage, key)
        if not path.is_file():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated or foreign file: treat as a miss
            logger.warning("dropping unreadable cache entry %s (%s)", path, type(exc).__name__)
            path.unlink(missing_ok=True)
            return None
        logger.info("cache hit: %s/%s", stage, key[:12])
        try:
            os.utime(path)  # most recently used: evicted last
        except OSError:
            pass
        return entry

    def save(self, stage: str, key: str, entry: Mapping[str, Any]) -> Path | None:
        """Store ``entry`` (tensors, nested dicts/lists of them, numbers, strings) atomically."""
        _check_tensors_only(entry)
        if not self.enabled:
            return None
        path = self.path(stage, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = _to_cpu(entry)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pt")
        try:
            with os.fdopen(fd, "wb") as handle:
                torch.save(entry, handle)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.evict(keep=path)
        return path

    def size(self) -> int:
        """Bytes held by the entries."""
        return sum(f.stat().st_size for f in self.root.rglob("*.pt") if f.is_file()) if self.root.is_dir() else 0

    def evict(self, keep: Path | None = None) -> int:
        """Deletes least recently used entries until the cache fits ``max_bytes`` (never ``keep``, the entry just
        written); returns how many were removed."""
        if self.max_bytes is None or not self.root.is_dir():
            return 0
        entries = []
        for file in self.root.rglob("*.pt"):
            try:
                stat = file.stat()
            except OSError:  # removed meanwhile by another process
                continue
            entries.append((stat.st_mtime_ns, stat.st_size, file))
        total = sum(size for _, size, _ in entries)
        removed = 0
        for _, size, file in sorted(entries, key=lambda e: e[0]):
            if total <= self.max_bytes:
                break
            if keep is not None and file == keep:
                continue
            file.unlink(missing_ok=True)
            total -= size
            removed += 1
        if removed:
            logger.info("stage cache over %d bytes: removed %d least recently used entries", self.max_bytes, removed)
        return removed

    def get_or_compute(self, stage: str, key: str, compute: Callable[[], Mapping[str, Any]]) -> dict[str, Any]:
        entry = self.load(stage, key)
        if entry is None:
            entry = dict(compute())
            self.save(stage, key, entry)
        return entry

    def clear(self, stage: str | None = None) -> int:
        """Delete entries (of one stage, or all); returns how many files were removed."""
        base = self.root / stage if stage else self.root
        removed = 0
        if base.is_dir():
            for file in base.rglob("*.pt"):
                file.unlink(missing_ok=True)
                removed += 1
        return removed


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()  # clone: a view would drag its whole storage into the file
    if isinstance(obj, Mapping):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_cpu(v) for v in obj]
    return obj

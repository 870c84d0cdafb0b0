"""tcve.cache: content hashes, keys, and the tensor-only stage cache."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from tcve.cache import StageCache, cache_key, hash_file, hash_frames


@dataclass(frozen=True)
class _Settings:
    steps: int = 200
    lr: float = 3e-4
    names: tuple[str, ...] = ("a", "b")


def _clip(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)


def test_hash_frames_is_deterministic_and_sensitive_to_one_pixel():
    frames = _clip()
    h = hash_frames(frames)
    assert len(h) == 64
    assert hash_frames(list(frames)) == h  # stack or list of frames: same content, same hash
    assert hash_frames(iter(list(frames))) == h
    changed = frames.copy()
    changed[1, 4, 4, 0] ^= 1
    assert hash_frames(changed) != h
    assert hash_frames(frames[:2]) != h  # frame count is part of the content
    assert hash_frames(torch.from_numpy(frames)) == h  # a tensor with the same bytes


def test_hash_file(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"video bytes")
    b.write_bytes(b"video bytez")
    assert hash_file(a) == hash_file(a) and hash_file(a) != hash_file(b)


def test_cache_key_depends_on_content_settings_checkpoints_and_stage():
    base = cache_key("abc", _Settings(), ("e4e-ffhq",), stage="inversion")
    assert base == cache_key("abc", _Settings(), ("e4e-ffhq",), stage="inversion")
    assert base == cache_key("abc", _Settings(lr=0.0003), ("e4e-ffhq",), stage="inversion")  # same float
    others = {
        cache_key("abd", _Settings(), ("e4e-ffhq",), stage="inversion"),
        cache_key("abc", _Settings(steps=199), ("e4e-ffhq",), stage="inversion"),
        cache_key("abc", _Settings(), ("psp-ffhq",), stage="inversion"),
        cache_key("abc", _Settings(), ("e4e-ffhq",), stage="edit"),
        cache_key("abc", {"steps": 200}, ("e4e-ffhq",), stage="inversion"),
    }
    assert base not in others and len(others) == 5
    with pytest.raises(TypeError):
        cache_key("abc", {"bad": object()})


def test_round_trip_tensors_only(tmp_path):
    cache = StageCache(tmp_path)
    entry = {"w_plus": torch.randn(3, 10, 64), "state": {"conv.weight": torch.randn(4, 4)},
             "metrics": {"lpips": 0.25, "psnr": 31.5}, "losses": [torch.tensor(1.0), torch.tensor(0.5)],
             "nothing": None}
    key = cache_key("clip", _Settings(), ("x",), "inversion")
    assert cache.load("inversion", key) is None
    path = cache.save("inversion", key, entry)
    assert path is not None and path.is_file()
    assert not list(path.parent.glob(".tmp-*"))  # written atomically: no temporary left behind
    loaded = cache.load("inversion", key)
    assert torch.equal(loaded["w_plus"], entry["w_plus"])
    assert torch.equal(loaded["state"]["conv.weight"], entry["state"]["conv.weight"])
    assert loaded["metrics"] == {"lpips": 0.25, "psnr": 31.5}
    assert [float(t) for t in loaded["losses"]] == [1.0, 0.5]
    assert cache.contains("inversion", key) and cache.clear("inversion") == 1
    assert not cache.contains("inversion", key)


def test_refuses_objects_and_drops_corrupt_entries(tmp_path):
    cache = StageCache(tmp_path)
    with pytest.raises(TypeError, match="tensors"):
        cache.save("inversion", "k" * 64, {"generator": nn.Linear(2, 2)})
    path = cache.path("inversion", "f" * 64)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a torch file")
    assert cache.load("inversion", "f" * 64) is None
    assert not path.exists()  # removed so the next run recomputes and rewrites it


def test_get_or_compute_computes_once(tmp_path):
    cache = StageCache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"x": torch.arange(3)}

    first = cache.get_or_compute("edit", "a" * 64, compute)
    second = cache.get_or_compute("edit", "a" * 64, compute)
    assert len(calls) == 1 and torch.equal(first["x"], second["x"])
    disabled = StageCache(tmp_path, enabled=False)
    disabled.get_or_compute("edit", "a" * 64, compute)
    assert len(calls) == 2

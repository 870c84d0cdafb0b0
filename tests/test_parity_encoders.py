"""Parity of tcve's e4e / pSp / ReStyle encoders and StyleCLIP mapper with the ORIGINAL implementations.

The weights are too large to commit, so each fixture is a manifest (keys, shapes, dtypes, the upstream init's
per-tensor mean/std, opts) from which the identical state dict is regenerated with a seeded rule; the upstream
code ran on that same state dict and its outputs are committed (see tests/fixtures/README.md, "Encoder fixtures"
and "Mapper fixtures"). Here the state dict is written in the native file layout, loaded through tcve's loaders
and compared: max relative error <= 1e-5 (float32).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch

from tcve.models.encoders import PSPEncoder, ReStyleEncoder, load_encoder
from tcve.models.mapper import load_mapper

FIXTURES = Path(__file__).parent / "fixtures"
REL_TOL = 1e-5


POOL = 1 << 22  # all tensors are slices of one seeded N(0,1) pool (cheap to regenerate, ~100M+ parameters)


def seeded_tensor(shape: list[int], mean: float, std: float, idx: int, key: str, pool: torch.Tensor) -> torch.Tensor:
    """The fixture rule: pool slice at a per-tensor offset, scaled to N(mean, std) (std 0.05 for constant-initialised
    tensors), |.| for BN running_var."""
    n = math.prod(shape)
    off = (idx * 1000003) % (POOL - n + 1)
    s = std if std > 0 else 0.05
    t = pool[off:off + n].reshape(shape) * s + mean
    return t.abs() if key.endswith("running_var") else t


def regenerate(manifest: dict) -> dict[str, torch.Tensor]:
    pool = torch.randn(POOL, generator=torch.Generator().manual_seed(manifest["seed"]), dtype=torch.float32)
    sd = {}
    for idx, entry in enumerate(manifest["state_dict"]):
        key, shape, dtype = entry["key"], tuple(entry["shape"]), getattr(torch, entry["dtype"])
        if "value" in entry:  # kept as upstream built it (FIR kernels, num_batches_tracked)
            sd[key] = torch.tensor(entry["value"], dtype=dtype).reshape(shape)
        else:
            sd[key] = seeded_tensor(shape, entry["mean"], entry["std"], idx, key, pool)
    return sd


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def fixture_images(seed: int, n: int = 2, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def load_fixture(name: str) -> tuple[dict, dict]:
    manifest = json.loads((FIXTURES / f"{name}_manifest.json").read_text())
    io = torch.load(FIXTURES / f"{name}_io.pt", weights_only=True)
    return manifest, io


def native_file(tmp_path: Path, manifest: dict, as_namespace: bool, to_disk: bool) -> Path | dict:
    """The regenerated weights in the official layout {'state_dict': {encoder.*, decoder.*}, 'opts', 'latent_avg'};
    written with torch.save when ``to_disk`` (the e4e files are ~0.6 GB, so only some cases pay for the disk)."""
    la = manifest["latent_avg"]
    latent_avg = torch.randn(tuple(la["shape"]), generator=torch.Generator().manual_seed(la["seed"]))
    opts = argparse.Namespace(**manifest["opts"]) if as_namespace else dict(manifest["opts"])
    obj = {"state_dict": regenerate(manifest), "opts": opts, "latent_avg": latent_avg}
    if not to_disk:
        return obj
    path = tmp_path / f"{manifest['mode']}.pt"
    torch.save(obj, path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name,as_namespace", [("e4e", False), ("psp", True)])
def test_e4e_psp_parity(tmp_path: Path, name: str, as_namespace: bool) -> None:
    manifest, io = load_fixture(f"encoder_{name}")
    x = fixture_images(manifest["inputs_seed"])
    assert float(x.sum()) == pytest.approx(float(io["image_sum"]), rel=1e-6)  # same RNG stream as upstream
    enc = load_encoder(native_file(tmp_path, manifest, as_namespace, to_disk=name == "e4e"))
    assert isinstance(enc, PSPEncoder) and not enc.training
    enc.input_size = None  # the upstream run fed 64 px images straight in (see fixtures/README.md)
    with torch.no_grad():
        w_plus = enc(x)
    ref = io["w_plus"]
    assert w_plus.shape == ref.shape == (2, 10, 512)
    assert rel_err(w_plus, ref) <= REL_TOL
    # the encoder's own part (without latent_avg) must match as tightly
    assert rel_err(w_plus - enc.latent_avg, ref - enc.latent_avg) <= REL_TOL


@pytest.mark.slow
@pytest.mark.parametrize("name", ["restyle_psp", "restyle_e4e"])
def test_restyle_parity(tmp_path: Path, name: str) -> None:
    manifest, io = load_fixture(f"encoder_{name}")
    x = fixture_images(manifest["inputs_seed"])
    assert float(x.sum()) == pytest.approx(float(io["image_sum"]), rel=1e-6)
    enc = load_encoder(native_file(tmp_path, manifest, as_namespace=True, to_disk=name == "restyle_e4e"))
    assert isinstance(enc, ReStyleEncoder)
    enc.input_size = 64  # upstream face_pool was set to the 64 px fixture size
    ref_iters = io["w_plus_iters"]  # [n_iters=3, B, n_styles, 512]
    # all 3 upstream steps for ReStyle-e4e; the first 2 for ReStyle-pSp (the loop is shared; saves CPU time)
    n_iters = ref_iters.shape[0] if name == "restyle_e4e" else 2
    with torch.no_grad():
        avg = enc.average_image()
        iters = enc.iterate(x, n_iters=n_iters)
        last_image = enc.decode(iters[-1]) if n_iters == ref_iters.shape[0] else None
    assert rel_err(avg[0], io["avg_image"]) <= REL_TOL
    for step, (ours, ref) in enumerate(zip(iters, ref_iters)):
        assert ours.shape == ref.shape == (2, 10, 512)
        assert rel_err(ours, ref) <= REL_TOL, f"step {step}"
    if last_image is not None:
        assert rel_err(last_image, io["image_last"]) <= REL_TOL
    with pytest.raises(ValueError, match="n_iters"):
        enc.iterate(x, n_iters=0)
    # the steps really refine: later codes differ from the first
    assert rel_err(iters[-1], iters[0]) > 1e-3


def test_levels_mapper_parity(tmp_path: Path) -> None:
    manifest, io = load_fixture("mapper_levels")
    g = torch.Generator().manual_seed(manifest["inputs_seed"])
    w = torch.randn(3, 18, 512, generator=g)
    assert float(w.sum()) == pytest.approx(float(io["w_plus_sum"]), rel=1e-6)
    path = tmp_path / "mapper.pt"
    torch.save({"state_dict": regenerate(manifest), "opts": argparse.Namespace(**manifest["opts"])}, path)
    mapper = load_mapper(path)
    with torch.no_grad():
        delta = mapper(w)
    assert rel_err(delta, io["delta"]) <= REL_TOL
    assert torch.count_nonzero(delta[:, 8:]) == 0  # no_fine_mapper=True

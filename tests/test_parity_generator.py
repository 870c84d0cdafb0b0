"""Parity of tcve's Generator with the ORIGINAL implementations, on random weights (see tests/fixtures/README.md).

The fixtures were produced by running rosinality/stylegan2-pytorch and NVlabs/stylegan2-ada-pytorch
themselves on CPU; here tcve loads their native files and must reproduce the stored images.
"""

from __future__ import annotations

import argparse
import os
import pickle

import pytest
import torch

from tcve.errors import CheckpointFormatError
from tcve.models.nvlabs import PersistentRecord, load_nvlabs_pickle
from tcve.models import load_generator

TOL = 1e-5


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _outputs(g, io: dict) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return {
            "img_z_const": g(io["z"], input_is="z"),
            "img_z_trunc07_const": g(io["z"], input_is="z", truncation=0.7),
            "img_wplus_const": g(io["w_plus"]),
            "zero_noise": g(io["w_plus"], noise_mode="none"),
        }


def test_rosinality_parity(fixtures_dir):
    g = load_generator(os.path.join(fixtures_dir, "generator_rosinality_tiny.pt"))
    io = torch.load(os.path.join(fixtures_dir, "generator_rosinality_tiny_io.pt"), weights_only=True)
    assert (g.size, g.style_dim, g.n_mlp, g.n_latent) == (64, 64, 3, 10)
    assert not g.training and all(p.dtype == torch.float32 for p in g.parameters())
    out = _outputs(g, io)
    io["zero_noise"] = io["img_wplus_zero_noise"]
    errors = {k: _rel(v, io[k]) for k, v in out.items()}
    assert out["img_wplus_const"].shape == (2, 3, 64, 64)
    assert max(errors.values()) <= TOL, errors


def test_rosinality_training_file_layouts(fixtures_dir, tmp_path):
    """Files with g/d/g_optim/args (training snapshots), NADA-style {'g_ema'} and bare state dicts."""
    src = torch.load(os.path.join(fixtures_dir, "generator_rosinality_tiny.pt"), weights_only=True)
    sd, latent_avg = src["g_ema"], src["latent_avg"]
    g_other = {k: (v + 1.0 if k.endswith("activate.bias") else v) for k, v in sd.items()}
    train_file = tmp_path / "train.pt"
    torch.save({"g": g_other, "d": {"x": torch.zeros(1)}, "g_ema": sd, "g_optim": {}, "d_optim": {},
                "args": argparse.Namespace(size=64), "latent_avg": latent_avg}, train_file)
    w = torch.randn(1, 10, 64)
    ref = load_generator(os.path.join(fixtures_dir, "generator_rosinality_tiny.pt"))
    with torch.no_grad():
        expected = ref(w)
        assert torch.equal(load_generator(train_file)(w), expected)  # g_ema is the default
        assert _rel(load_generator(train_file, key="g")(w), expected) > 1e-2
        assert torch.equal(load_generator(sd)(w), expected)  # bare state dict
    torch.save({"g_ema": sd}, tmp_path / "nada.pt")  # NADA: no latent_avg -> estimated from the mapping
    g_nada = load_generator(tmp_path / "nada.pt")
    assert float((g_nada.latent_avg - latent_avg).abs().max()) < 0.3  # both are 4096-sample means
    assert float(g_nada.latent_avg.abs().max()) > 0.5
    assert torch.equal(ref.latent_avg, latent_avg)
    with pytest.raises(CheckpointFormatError):
        load_generator({"foo": torch.zeros(1)})


def test_nvlabs_parity(fixtures_dir):
    g = load_generator(os.path.join(fixtures_dir, "generator_nvlabs_tiny.pkl"))
    io = torch.load(os.path.join(fixtures_dir, "generator_nvlabs_tiny_io.pt"), weights_only=True)
    assert (g.size, g.style_dim, g.n_mlp, g.n_latent, g.conv_clamp) == (64, 64, 2, 10, 2.0)
    assert g.channels == {4: 32, 8: 32, 16: 32, 32: 16, 64: 8}
    out = _outputs(g, io)
    io["zero_noise"] = io["img_wplus_none"]
    errors = {k: _rel(v, io[k]) for k, v in out.items()}
    with torch.no_grad():
        errors["w_trunc07"] = _rel(g.mapping(io["z"], truncation=0.7), io["w_z_trunc07"][:, 0])
    assert max(errors.values()) <= TOL, errors


def test_nvlabs_records_and_no_embedded_source(fixtures_dir):
    path = os.path.join(fixtures_dir, "generator_nvlabs_tiny.pkl")
    with open(path, "rb") as f:
        raw = f.read()
    assert b"def modulated_conv2d" not in raw  # the committed fixture carries no upstream source
    data = load_nvlabs_pickle(path)
    assert set(data) >= {"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"}
    assert isinstance(data["G_ema"], PersistentRecord) and data["G_ema"].class_name == "Generator"
    assert type(data["training_set_kwargs"]) is dict  # EasyDict -> dict
    tensors = data["G_ema"].tensors()
    assert tensors["mapping.w_avg"].shape == (64,)
    assert tensors["synthesis.b64.conv0.weight"].shape == (8, 16, 3, 3)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo tcve-pwned",))


def test_nvlabs_unpickler_refuses_arbitrary_globals(tmp_path):
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"G_ema": _Evil()}))
    with pytest.raises(CheckpointFormatError, match="system"):
        load_nvlabs_pickle(evil)
    with pytest.raises(CheckpointFormatError, match="system"):
        load_generator(evil)  # content-detected as a raw pickle -> restricted unpickler
    # A persistent object whose embedded source would create a file: it must become a record, never run.
    marker = tmp_path / "ran.txt"
    meta = {"type": "class", "version": 4, "class_name": "Generator", "state": {"z_dim": 1},
            "module_src": f"open({str(marker)!r}, 'w').write('x')\nclass Generator: pass\n"}
    body = pickle.dumps(meta, protocol=0)[:-1]  # drop STOP
    payload = b"ctorch_utils.persistence\n_reconstruct_persistent_obj\n(" + body + b"tR."
    with pytest.raises(CheckpointFormatError, match="expected a dict"):
        load_nvlabs_pickle(payload)  # the record was built (then rejected as top level) without running module_src
    assert not marker.exists()


def test_nvlabs_unpickler_payload_record(tmp_path):
    meta = {"type": "class", "version": 4, "class_name": "Generator", "state": {"z_dim": 1}, "module_src": "x"}
    payload = (b"(dp0\nVG_ema\np1\nctorch_utils.persistence\n_reconstruct_persistent_obj\n("
               + pickle.dumps(meta, protocol=0)[:-1] + b"tRs.")
    data = load_nvlabs_pickle(payload)
    assert isinstance(data["G_ema"], PersistentRecord)
    assert data["G_ema"].class_name == "Generator" and data["G_ema"].state == {"z_dim": 1}

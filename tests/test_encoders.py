"""e4e / pSp / ReStyle encoders: full-size layout, latent_avg semantics, input resizing, file-format errors.

Numerical parity with the original implementations is in test_parity_encoders.py.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from tcve.errors import CheckpointFormatError
from tcve.models.encoders import PSPEncoder, StyleEncoder, load_encoder, resize_image

FIXTURES = Path(__file__).parent / "fixtures"


def test_full_size_e4e_layout_matches_upstream() -> None:
    # The 1024 px e4e (18 W+ rows, 267M parameters) is built on the meta device: layout and shapes, no memory.
    ref = json.loads((FIXTURES / "encoder_e4e_1024_keys.json").read_text())
    with torch.device("meta"):
        enc = StyleEncoder(n_styles=18, input_nc=3, fpn=True, progressive=True)
        w_plus = enc(torch.empty(1, 3, 256, 256))
    assert {k: list(v.shape) for k, v in enc.state_dict().items()} == ref["state_dict_shapes"]
    assert sum(p.numel() for p in enc.parameters()) == ref["n_params"] == 267_136_704
    assert tuple(w_plus.shape) == (1, 18, 512) and ref["style_count"] == 18


@pytest.fixture(scope="module")
def small_psp_state() -> dict:
    """A real (random-init) pSp GradualStyleEncoder with 2 rows, in the official file layout."""
    torch.manual_seed(0)
    enc = StyleEncoder(n_styles=2, input_nc=3, fpn=True, progressive=False).eval()
    with torch.no_grad():
        for m in enc.modules():  # non-trivial BN statistics so eval-mode BN matters
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    sd = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    sd["decoder.input.input"] = torch.zeros(1, 512, 4, 4)
    return {"state_dict": sd, "opts": {"encoder_type": "GradualStyleEncoder", "start_from_latent_avg": True,
                                       "output_size": 1024, "input_nc": 3},
            "latent_avg": torch.randn(2, 512), "_module": enc}


def _file(state: dict, **changes) -> dict:
    out = {k: v for k, v in state.items() if k != "_module"}
    out.update(changes)
    return out


def test_latent_avg_and_resize(tmp_path: Path, small_psp_state: dict) -> None:
    ref_enc = small_psp_state["_module"]
    path = tmp_path / "psp.pt"
    torch.save(_file(small_psp_state, opts=argparse.Namespace(**small_psp_state["opts"])), path)
    enc = load_encoder(path)
    assert isinstance(enc, PSPEncoder) and not enc.training and enc.n_latent == 2
    assert enc.input_size == 256 and enc.encoder.input_layer[0].weight.dtype == torch.float32
    enc.input_size = 32  # small inputs keep this CPU test fast; the resize path is the same
    x = torch.rand(2, 3, 48, 48) * 2 - 1
    with torch.no_grad():
        codes = ref_enc(resize_image(x, 32))
        w_plus = enc(x)
    # start_from_latent_avg: codes + latent_avg (as upstream pSp.forward)
    torch.testing.assert_close(w_plus, codes + small_psp_state["latent_avg"], rtol=1e-6, atol=1e-6)
    assert float((w_plus - codes).abs().max()) > 0.1
    # without start_from_latent_avg the raw codes come back; a [512] latent_avg is broadcast like a repeated one
    opts = {**small_psp_state["opts"], "start_from_latent_avg": False}
    with torch.no_grad():
        raw = load_encoder(_file(small_psp_state, opts=opts))
        raw.input_size = 32
        torch.testing.assert_close(raw(x), codes, rtol=1e-6, atol=1e-6)
        flat = load_encoder(_file(small_psp_state, latent_avg=small_psp_state["latent_avg"][0]))
        assert torch.equal(flat.latent_avg, small_psp_state["latent_avg"][0].expand(2, 512))
    # resize_image: antialiased bilinear to size x size, identity at that size
    y = resize_image(x, 32)
    assert y.shape == (2, 3, 32, 32) and resize_image(y, 32) is y
    assert abs(float(y.mean() - x.mean())) < 0.02


def test_format_errors(tmp_path: Path, small_psp_state: dict) -> None:
    sd = small_psp_state["state_dict"]
    cases = {
        "state_dict": {"g_ema": {"conv1.conv.weight": torch.zeros(1)}},  # a generator file
        "no 'encoder": {"state_dict": {"mapper.course_mapping.mapping.1.weight": torch.zeros(512, 512)}, "opts": {}},
        "not supported": _file(small_psp_state, opts={"encoder_type": "ResNetBackboneEncoder"}),
        "does not match": _file(small_psp_state, opts={"encoder_type": "Encoder4Editing"}.copy()
                                | {"encoder_type": "BackboneEncoder"}),
        "cannot tell": _file(small_psp_state, opts={}),
        "Unknown encoder_type": _file(small_psp_state, opts={"encoder_type": "Foo"}),
        "latent_avg": _file(small_psp_state, latent_avg=None),
        "do not match a": _file(small_psp_state, state_dict={**sd, "encoder.latlayer1.weight": torch.zeros(512, 3, 1, 1)}),
        "ReStyle file without 'decoder": _file(small_psp_state, state_dict={
            **{k: v for k, v in sd.items() if not k.startswith("decoder.")},
            "encoder.input_layer.0.weight": torch.zeros(64, 6, 3, 3)}),
    }
    for message, obj in cases.items():
        with pytest.raises(CheckpointFormatError, match=message):
            load_encoder(obj)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointFormatError, match="Could not read"):
        load_encoder(junk)
    tensor_file = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor_file)
    with pytest.raises(CheckpointFormatError, match="Not a pSp/e4e/ReStyle"):
        load_encoder(tensor_file)

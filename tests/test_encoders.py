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
    # Every key and shape equals the original Encoder4Editing's, so e4e_ffhq_encode.pt loads strictly.
    ref = json.loads((FIXTURES / "encoder_e4e_1024_keys.json").read_text())
    with torch.device("meta"):
        enc = StyleEncoder(n_styles=18, input_nc=3, fpn=True, progressive=True)
    assert {k: list(v.shape) for k, v in enc.state_dict().items()} == ref["state_dict_shapes"]
    assert sum(p.numel() for p in enc.parameters()) == ref["n_params"] == 267_136_704
    assert enc.n_styles == ref["style_count"] == 18
    # heads: rows 0-2 on the 16x16 map (4 stride-2 convs), 3-6 on 32x32 (5), 7-17 on 64x64 (6)
    n_convs = [len([k for k in ref["state_dict_shapes"] if k.startswith(f"styles.{i}.convs.") and k.endswith("weight")])
               for i in range(18)]
    assert n_convs == [4] * 3 + [5] * 4 + [6] * 11


@pytest.mark.slow
def test_full_size_e4e_from_random_init_returns_18_rows() -> None:
    # A real random initialisation of the FFHQ-1024 e4e (no download), run once through PSPEncoder as load_encoder
    # builds it: W+ of 18 rows, row 0 plus offsets, latent_avg added.
    torch.manual_seed(0)
    body = StyleEncoder(n_styles=18, input_nc=3, fpn=True, progressive=True).eval()
    latent_avg = torch.randn(18, 512)
    encoder = PSPEncoder(body, latent_avg, True, "Encoder4Editing").eval()
    image = torch.rand(1, 3, 256, 256) * 2 - 1
    with torch.no_grad():
        w_plus = encoder(image)
        codes = body(image)
    assert w_plus.shape == (1, 18, 512)
    assert torch.isfinite(w_plus).all()
    torch.testing.assert_close(w_plus, codes + latent_avg, rtol=0, atol=0)
    assert not torch.allclose(codes[:, 1], codes[:, 0])  # progressive offsets on top of row 0


@pytest.fixture(scope="module")
def small_psp_state() -> dict:
    """A real (random-init) pSp GradualStyleEncoder with 1 row, in the official file layout."""
    torch.manual_seed(0)
    enc = StyleEncoder(n_styles=1, input_nc=3, fpn=True, progressive=False).eval()
    with torch.no_grad():
        for m in enc.modules():  # non-trivial BN statistics so eval-mode BN matters
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    sd = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    sd["decoder.input.input"] = torch.zeros(1, 512, 4, 4)
    return {"state_dict": sd, "opts": {"encoder_type": "GradualStyleEncoder", "start_from_latent_avg": True,
                                       "output_size": 1024, "input_nc": 3},
            "latent_avg": torch.randn(1, 512), "_module": enc}


def _file(state: dict, **changes) -> dict:
    out = {k: v for k, v in state.items() if k != "_module"}
    out.update(changes)
    return out


def test_latent_avg_and_resize(small_psp_state: dict) -> None:
    # (files on disk are covered by the parity tests; the loaded dict is the same object torch.load returns)
    ref_enc = small_psp_state["_module"]
    enc = load_encoder(_file(small_psp_state, opts=argparse.Namespace(**small_psp_state["opts"])))
    assert isinstance(enc, PSPEncoder) and not enc.training and enc.n_latent == 1
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
        assert flat.latent_avg.shape == (1, 512) and torch.equal(flat.latent_avg[0], small_psp_state["latent_avg"][0])
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
        "does not match": _file(small_psp_state, opts={"encoder_type": "BackboneEncoder"}),
        "cannot tell": _file(small_psp_state, opts={}),
        "Unknown encoder_type": _file(small_psp_state, opts={"encoder_type": "Foo"}),
        "latent_avg": _file(small_psp_state, latent_avg=None),
        "missing": _file(small_psp_state,
                         state_dict={k: v for k, v in sd.items() if k != "encoder.styles.0.linear.bias"}),
        "do not match a": _file(small_psp_state,
                                state_dict={**sd, "encoder.latlayer1.weight": torch.zeros(512, 3, 1, 1)}),
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


@pytest.mark.parametrize("stages,store_stages", [
    (((16, 16, 1), (16, 24, 2), (24, 32, 1), (32, 40, 1)), False),  # depth changes at every stage: inferred
    (((32, 32, 1), (32, 48, 1), (48, 64, 1), (64, 64, 1)), True),  # ambiguous (64 -> 64): from opts['stages']
])
def test_small_configuration_roundtrip(stages: tuple, store_stages: bool) -> None:
    torch.manual_seed(1)
    enc = StyleEncoder(n_styles=8, input_nc=3, fpn=True, progressive=True, stages=stages, style_dim=24).eval()
    assert enc._taps == tuple(sum(n for _, _, n in stages[:k]) - 1 for k in (2, 3, 4))
    opts = {"encoder_type": "Encoder4Editing", "start_from_latent_avg": True, "input_size": 32}
    if store_stages:
        opts["stages"] = [list(st) for st in stages]
    latent_avg = torch.randn(24)
    obj = {"state_dict": {f"encoder.{k}": v for k, v in enc.state_dict().items()}, "opts": opts,
           "latent_avg": latent_avg}
    loaded = load_encoder(obj)
    assert loaded.input_size == 32 and loaded.encoder.stages == stages
    x = torch.rand(2, 3, 40, 40) * 2 - 1
    with torch.no_grad():
        codes = enc(resize_image(x, 32))
        w_plus = loaded(x)
    assert w_plus.shape == (2, 8, 24)
    torch.testing.assert_close(w_plus, codes + latent_avg, rtol=1e-6, atol=1e-6)
    # e4e: rows 1.. are row 0 plus an offset predicted by their own heads
    with torch.no_grad():
        for head in enc.styles[1:]:
            head.linear.weight.zero_()
            head.linear.bias.zero_()
        flat = enc(resize_image(x, 32))
    assert torch.equal(flat, flat[:, :1].expand_as(flat))
    if store_stages:
        del opts["stages"]
        with pytest.raises(CheckpointFormatError, match="stages"):
            load_encoder(obj)

"""StyleCLIP LevelsMapper: group split, disabled groups, the across-rows PixelNorm quirk, official-layout loading."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from tcve.errors import CheckpointFormatError
from tcve.models.mapper import LevelsMapper, load_mapper


@pytest.fixture(scope="module")
def mapper() -> LevelsMapper:
    torch.manual_seed(0)
    m = LevelsMapper(no_fine=True).eval()
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim == 1:
                p.normal_(0.0, 0.5)  # non-zero biases so every term matters
    return m.requires_grad_(False)


def test_shapes_and_disabled_group_is_zero(mapper: LevelsMapper) -> None:
    w = torch.randn(2, 18, 512)
    delta = mapper(w)
    assert delta.shape == (2, 18, 512)
    assert torch.count_nonzero(delta[:, 8:]) == 0  # fine group disabled -> exactly zero
    assert float(delta[:, :4].abs().mean()) > 1e-3 and float(delta[:, 4:8].abs().mean()) > 1e-3
    assert sum(p.numel() for p in mapper.parameters()) == 2 * 4 * (512 * 512 + 512)  # 2,101,248 as eyeglasses.pt


def test_pixelnorm_across_rows(mapper: LevelsMapper) -> None:
    # StyleCLIP normalises over dim 1 of [B, rows, 512]: scaling a whole channel in all coarse rows changes
    # nothing, while scaling one row changes the other rows' outputs of its group (and only that group).
    w = torch.randn(1, 18, 512)
    base = mapper(w)
    scaled = w.clone()
    scaled[:, :4, :7] *= 3.0
    assert torch.allclose(mapper(scaled), base, rtol=1e-5, atol=1e-6)
    one_row = w.clone()
    one_row[:, 0] *= 3.0
    out = mapper(one_row)
    assert float((out[:, 1:4] - base[:, 1:4]).abs().max()) > 1e-3
    assert torch.equal(out[:, 4:], base[:, 4:])


def _official(mapper: LevelsMapper, opts: object) -> dict:
    sd = {f"mapper.{k}": v.clone() for k, v in mapper.state_dict().items()}
    sd["decoder.input.input"] = torch.zeros(1, 8, 4, 4)  # official files also carry the decoder: ignored here
    return {"state_dict": sd, "opts": opts}


def test_strict_load_official_layout(tmp_path: Path, mapper: LevelsMapper) -> None:
    opts = argparse.Namespace(mapper_type="LevelsMapper", no_coarse_mapper=False, no_medium_mapper=False,
                              no_fine_mapper=True, stylegan_size=1024)
    path = tmp_path / "eyeglasses.pt"
    torch.save(_official(mapper, opts), path)
    loaded = load_mapper(path)
    assert (loaded.no_coarse, loaded.no_medium, loaded.no_fine) == (False, False, True)
    assert not loaded.training
    assert set(loaded.state_dict()) == set(mapper.state_dict())
    assert any(k.startswith("course_mapping.mapping.1.") for k in loaded.state_dict())  # upstream spelling
    w = torch.randn(2, 18, 512)
    assert torch.equal(loaded(w), mapper(w))
    # without opts the disabled groups are read from the keys
    inferred = load_mapper({"state_dict": _official(mapper, None)["state_dict"]})
    assert (inferred.no_coarse, inferred.no_medium, inferred.no_fine) == (False, False, True)


def test_errors(tmp_path: Path, mapper: LevelsMapper) -> None:
    bad_opts = {"mapper_type": "LevelsMapper", "no_coarse_mapper": False, "no_medium_mapper": False,
                "no_fine_mapper": False}
    with pytest.raises(CheckpointFormatError, match="fine"):
        load_mapper(_official(mapper, bad_opts))
    with pytest.raises(CheckpointFormatError, match="LevelsMapper"):
        load_mapper({"state_dict": {"encoder.input_layer.0.weight": torch.zeros(64, 3, 3, 3)}, "opts": {}})
    with pytest.raises(CheckpointFormatError, match="not supported"):
        load_mapper(_official(mapper, {"mapper_type": "SingleMapper"}))
    sd = _official(mapper, None)["state_dict"]
    sd["mapper.course_mapping.mapping.1.weight"] = torch.zeros(512, 256)
    with pytest.raises(CheckpointFormatError, match="do not match"):
        load_mapper({"state_dict": sd})
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointFormatError):
        load_mapper(junk)
    with pytest.raises(ValueError, match="w_plus"):
        mapper(torch.randn(2, 512))

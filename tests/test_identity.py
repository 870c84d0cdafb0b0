"""Identity metrics (TL-ID, TG-ID, ID-sim) on hand-made embeddings, and the IR-SE50 ArcFace file layout."""

import math

import numpy as np
import pytest
import torch

from tcve import checkpoints
from tcve.errors import CheckpointFormatError
from tcve.identity import (
    ArcFaceIRSE50,
    SmallIdentityNet,
    arcface_preprocess,
    embed,
    id_similarity,
    identity_metrics,
    identity_scores,
    load_identity_net,
    similarity_ratio,
    tg_id,
    tl_id,
)


def _unit(angle_deg):
    a = math.radians(angle_deg)
    return [math.cos(a), math.sin(a)]


def test_scores_of_hand_made_embeddings():
    # source: three frames at 0, 10, 20 degrees; edit: 0, 20, 40 degrees (twice the spread), scaled (norm ignored)
    source = torch.tensor([_unit(0), _unit(10), _unit(20)], dtype=torch.float64) * 3.0
    edited = torch.tensor([_unit(0), _unit(20), _unit(40)], dtype=torch.float64)
    c = lambda d: math.cos(math.radians(d))  # noqa: E731
    ratio = similarity_ratio(edited, source)
    assert ratio[0, 1].item() == pytest.approx(c(20) / c(10), abs=1e-12)
    assert ratio[0, 2].item() == pytest.approx(c(40) / c(20), abs=1e-12)
    assert torch.allclose(torch.diagonal(ratio), torch.ones(3, dtype=torch.float64))
    assert tl_id(edited, source) == pytest.approx(c(20) / c(10), abs=1e-12)       # both consecutive pairs alike
    expected_tg = (4 * c(20) / c(10) + 2 * c(40) / c(20)) / 6                     # 6 ordered pairs i != j
    assert tg_id(edited, source) == pytest.approx(expected_tg, abs=1e-12)
    assert id_similarity(edited, source) == pytest.approx((c(0) + c(10) + c(20)) / 3, abs=1e-12)
    scores = identity_scores(edited, source, "hand")
    assert scores.as_dict() == {"tl_id": scores.tl_id, "tg_id": scores.tg_id, "id_sim": scores.id_sim,
                                "identity_network": "hand"}


def test_an_edit_as_consistent_as_the_input_scores_one():
    rng = np.random.default_rng(0)
    source = torch.from_numpy(rng.normal(size=(6, 16)))
    rotation = torch.from_numpy(np.linalg.qr(rng.normal(size=(16, 16)))[0])
    edited = source @ rotation  # same Gram matrix, different identity vectors
    assert tl_id(edited, source) == pytest.approx(1.0, abs=1e-12)
    assert tg_id(edited, source) == pytest.approx(1.0, abs=1e-12)
    assert id_similarity(source, source) == pytest.approx(1.0, abs=1e-12)
    assert id_similarity(edited, source) < 0.9
    single = source[:1]
    assert math.isnan(tl_id(single, single)) and math.isnan(tg_id(single, single))
    with pytest.raises(ValueError, match="equal shape"):
        tl_id(source, source[:3])


def test_identity_flicker_lowers_tl_id():
    rng = np.random.default_rng(1)
    base = rng.normal(size=32)
    source = torch.from_numpy(np.stack([base + 0.1 * rng.normal(size=32) for _ in range(8)]))
    flicker = torch.from_numpy(np.stack([base + 0.8 * rng.normal(size=32) for _ in range(8)]))
    assert tl_id(flicker, source) < 0.8 < tl_id(source, source) == pytest.approx(1.0)


def _psp_irse50_state(seed=0):
    """A random state dict with the exact key names and shapes of pSp's ``model_ir_se50.pth``
    (``Backbone(112, 50, mode='ir_se')``), written out from the architecture, not from tcve's module."""
    g = torch.Generator().manual_seed(seed)

    def t(*shape, scale=0.05):
        return torch.randn(*shape, generator=g) * scale

    def bn(prefix, c, state):
        state[f"{prefix}.weight"] = 1 + t(c)
        state[f"{prefix}.bias"] = t(c)
        state[f"{prefix}.running_mean"] = t(c)
        state[f"{prefix}.running_var"] = 1 + t(c).abs()
        state[f"{prefix}.num_batches_tracked"] = torch.tensor(0)

    state = {"input_layer.0.weight": t(64, 3, 3, 3, scale=0.2)}
    bn("input_layer.1", 64, state)
    state["input_layer.2.weight"] = torch.full((64,), 0.25)
    unit = 0
    for in_c, depth, n in ((64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3)):
        for k in range(n):
            cin = in_c if k == 0 else depth
            p = f"body.{unit}"
            if cin != depth:
                state[f"{p}.shortcut_layer.0.weight"] = t(depth, cin, 1, 1, scale=cin ** -0.5)
                bn(f"{p}.shortcut_layer.1", depth, state)
            bn(f"{p}.res_layer.0", cin, state)
            # He-scaled convs and a small residual gain keep the 24 random units well conditioned
            state[f"{p}.res_layer.1.weight"] = t(depth, cin, 3, 3, scale=(2 / (9 * cin)) ** 0.5)
            state[f"{p}.res_layer.2.weight"] = torch.full((depth,), 0.25)
            state[f"{p}.res_layer.3.weight"] = t(depth, depth, 3, 3, scale=(2 / (9 * depth)) ** 0.5)
            bn(f"{p}.res_layer.4", depth, state)
            state[f"{p}.res_layer.4.weight"] = 0.2 + t(depth)
            state[f"{p}.res_layer.5.fc1.weight"] = t(depth // 16, depth, 1, 1)
            state[f"{p}.res_layer.5.fc2.weight"] = t(depth, depth // 16, 1, 1)
            unit += 1
    bn("output_layer.0", 512, state)
    state["output_layer.3.weight"] = t(512, 512 * 7 * 7, scale=(512 * 49) ** -0.5)
    state["output_layer.3.bias"] = t(512)
    bn("output_layer.4", 512, state)
    return state


@pytest.fixture(scope="module")
def psp_irse50_state():
    return _psp_irse50_state()


def test_arcface_file_in_psp_layout_loads_and_embeds(tmp_path, psp_irse50_state):
    state = psp_irse50_state
    assert sum(v.numel() for v in state.values()) * 4 == pytest.approx(175e6, rel=0.03)   # the Hub file: 175 MB
    path = tmp_path / "model_ir_se50.pth"
    torch.save(state, path)
    net = load_identity_net(path)
    assert isinstance(net, ArcFaceIRSE50) and not net.training
    assert set(net.state_dict()) == set(state)
    g = torch.Generator().manual_seed(1)
    crops = torch.rand(2, 3, 256, 256, generator=g) * 2 - 1
    out = embed(net, crops)
    assert out.shape == (2, 512)
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
    # any crop size goes through pSp's pooling to 256 first: a 512 crop upsampled from the 256 one embeds alike
    big = torch.repeat_interleave(torch.repeat_interleave(crops[:1], 2, dim=2), 2, dim=3)
    assert torch.allclose(net(big), out[:1], atol=1e-4)
    scores = identity_scores(out, out, net.network_name)
    assert scores.tl_id == pytest.approx(1.0) and scores.id_sim == pytest.approx(1.0, abs=1e-6)
    assert "IR-SE50" in scores.network


def test_arcface_preprocessing_is_psps_window():
    x = torch.zeros(1, 3, 256, 256)
    x[:, :, 35:223, 32:220] = 1.0
    out = arcface_preprocess(x)
    assert out.shape == (1, 3, 112, 112) and torch.all(out == 1.0)
    # the window's corner pixel lands in the first output pixel (188 -> 112 adaptive pooling)
    y = torch.zeros(1, 3, 256, 256)
    y[:, :, 35, 32] = 1.0
    assert arcface_preprocess(y)[0, 0, 0, 0] > 0 and arcface_preprocess(y)[0, 0, 1:, 1:].abs().max() == 0


def test_bad_identity_files_are_refused(psp_irse50_state):
    with pytest.raises(CheckpointFormatError, match="identity network"):
        load_identity_net({"foo": torch.zeros(1)})
    state = {**psp_irse50_state, "output_layer.3.weight": torch.zeros(512, 10)}
    with pytest.raises(CheckpointFormatError, match="do not fit"):
        load_identity_net(state)


def test_demo_identity_file_round_trip(tmp_path):
    net = SmallIdentityNet(width=8, dim=16).eval()
    path = tmp_path / "identity.pt"
    torch.save(net.to_file_dict(seed=0), path)
    loaded = load_identity_net(path)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    assert torch.allclose(loaded(x), net(x), atol=1e-6)
    scores = identity_metrics(loaded, x, x)
    assert scores.tg_id == pytest.approx(1.0) and scores.network == SmallIdentityNet.network_name


def test_registry_declares_the_arcface_checkpoint():
    entry = checkpoints.get("arcface-ir-se50")
    assert entry.repo_id == "matbee/model_ir_se50_pytorch" and entry.filename == "model_ir_se50.pth"
    assert entry.kind == "identity"

"""tcve StyleGAN2 generator: structure (rosinality layout at 1024 config-f), latents, noise, StyleSpace."""

from __future__ import annotations

import json
import os

import pytest
import torch

from tcve.models.stylegan2 import Generator, generator_from_state, infer_config


def _small(**kw) -> Generator:
    torch.manual_seed(0)
    g = Generator(size=32, style_dim=64, n_mlp=2, channel_multiplier=1, channel_max=32, **kw).eval()
    with torch.no_grad():  # non-zero noise strengths and biases so every path matters
        for n, p in g.named_parameters():
            if n.endswith("noise.weight"):
                p.fill_(0.3)
            elif n.endswith("bias") and "modulation" not in n:
                p.normal_(0, 0.2)
        g.latent_avg.normal_()
    return g


@pytest.fixture(scope="module")
def g1024() -> Generator:
    torch.manual_seed(0)
    return Generator(1024, 512, 8, channel_multiplier=2).eval()


def test_config_f_1024_matches_rosinality_layout(g1024, fixtures_dir):
    with open(os.path.join(fixtures_dir, "generator_rosinality_1024_keys.json")) as f:
        manifest = json.load(f)
    shapes = {k: list(v.shape) for k, v in g1024.state_dict().items()}
    assert shapes == manifest["state_dict_shapes"]  # same keys, same order-independent shapes, incl. buffers
    n_params = sum(p.numel() for p in g1024.parameters())
    assert n_params == manifest["n_params"] == 30_370_060
    assert (g1024.n_latent, g1024.num_layers, len(g1024.to_rgbs)) == (18, 17, 8)
    assert infer_config(g1024.state_dict()) == g1024.config


@pytest.mark.slow  # one 1024 px forward at batch 1: ~5 s on an idle CPU core
def test_config_f_1024_forward_and_styles(g1024):
    w = g1024.mapping(torch.randn(1, 512))
    with torch.no_grad():
        img = g1024(w, input_is="w")
    assert img.shape == (1, 3, 1024, 1024) and torch.isfinite(img).all()
    styles = g1024.style_space(w[:, None].expand(-1, 18, -1))
    assert len(styles) == 26  # 17 convs + 9 to_rgbs
    dims = [s.shape[1] for s in styles]
    assert dims == [512, 512] + [512, 512, 512] * 3 + [512, 512, 512, 512, 256, 256, 256, 128, 128, 128,
                                                      64, 64, 64, 32, 32]


def test_frozen_for_out_of_domain_1024(g1024):
    names = g1024.frozen_for_out_of_domain()
    modules = sorted({".".join(n.split(".")[:2]) for n in names})
    assert modules == sorted([f"convs.{i}" for i in range(8, 16)] + [f"to_rgbs.{i}" for i in range(4, 8)])
    all_in = [n for n, _ in g1024.named_parameters() if n.startswith(tuple(m + "." for m in modules))]
    # StyledConv: weight, modulation w/b, noise weight, activate bias; ToRGB: weight, modulation w/b, bias
    assert names == all_in and len(names) == 8 * 5 + 4 * 4


def test_256_structure():
    g = Generator(256, 512, 8, channel_multiplier=2)
    assert (g.n_latent, g.num_layers) == (14, 13)
    assert g.channels == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128}
    frozen = {".".join(n.split(".")[:2]) for n in g.frozen_for_out_of_domain()}
    assert frozen == {f"convs.{i}" for i in range(6, 12)} | {f"to_rgbs.{i}" for i in range(3, 6)}  # upper half


def test_a_small_generator_keeps_half_its_blocks_trainable_out_of_domain():
    # 64 px (the demo pack): blocks 8, 16 | 32, 64. Before: "the last four blocks" froze all of them, so phase 2
    # could tune the 4x4 layers only and barely moved an out-of-domain result.
    g = Generator(64, 64, 2, channel_multiplier=1, channel_max=64)
    frozen = {".".join(n.split(".")[:2]) for n in g.frozen_for_out_of_domain()}
    assert frozen == {f"convs.{i}" for i in range(4, 8)} | {"to_rgbs.2", "to_rgbs.3"}
    assert infer_config(g.state_dict()).channel_multiplier == 2


def test_w_equals_repeated_w_plus_and_z_path():
    g = _small()
    z = torch.randn(3, 64)
    with torch.no_grad():
        w = g.mapping(z)
        a = g(w, input_is="w")
        b = g(w[:, None].repeat(1, g.n_latent, 1), input_is="w_plus")
        c = g(z, input_is="z")
    assert a.shape == (3, 3, 32, 32)
    assert torch.equal(a, b) and torch.equal(a, c)


def test_truncation():
    g = _small()
    z = torch.randn(2, 64)
    with torch.no_grad():
        avg_img = g(g.latent_avg[None].expand(2, -1), input_is="w")
        assert torch.allclose(g(z, input_is="z", truncation=0.0), avg_img, atol=1e-6)
        w = g.mapping(z)
        w05 = g.mapping(z, truncation=0.5)
    assert torch.allclose(w05, g.latent_avg + 0.5 * (w - g.latent_avg), atol=1e-6)


def test_noise_modes():
    g = _small()
    w_plus = torch.randn(2, g.n_latent, 64)
    with torch.no_grad():
        c1, c2 = g(w_plus, noise_mode="const"), g(w_plus, noise_mode="const")
        r1, r2 = g(w_plus, noise_mode="random"), g(w_plus, noise_mode="random")
        none = g(w_plus, noise_mode="none")
        for name, buf in g.noises.named_buffers():
            buf.zero_()
        zero_const = g(w_plus, noise_mode="const")
    assert torch.equal(c1, c2)
    assert float((r1 - r2).abs().max()) > 1e-2 and float((r1 - c1).abs().max()) > 1e-2
    assert torch.equal(none, zero_const)
    with pytest.raises(ValueError):
        g(w_plus, noise_mode="bogus")


def test_batch_independence():
    g = _small()
    w_plus = torch.randn(3, g.n_latent, 64)
    with torch.no_grad():
        batched = g(w_plus)
        single = torch.cat([g(w_plus[i: i + 1]) for i in range(3)])
    assert float((batched - single).abs().max() / single.abs().max()) < 1e-5


def test_state_dict_round_trip():
    g = _small(conv_clamp=None)
    sd = g.state_dict()
    assert "latent_avg" not in sd and "noises.noise_0" in sd and "convs.0.conv.blur.kernel" in sd
    cfg = infer_config(sd)
    # the capped channel table is recovered from the shapes
    assert (cfg.size, cfg.style_dim, cfg.n_mlp) == (32, 64, 2) and cfg.build().channels == g.channels
    g2 = generator_from_state(sd, latent_avg=g.latent_avg)
    w_plus = torch.randn(2, g.n_latent, 64)
    with torch.no_grad():
        assert torch.equal(g(w_plus), g2(w_plus))
    assert torch.equal(g2.latent_avg, g.latent_avg)


def test_style_space_round_trip():
    g = _small()
    w_plus = torch.randn(2, g.n_latent, 64)
    with torch.no_grad():
        styles = g.style_space(w_plus)
        assert len(styles) == g.num_layers + len(g.to_rgbs) + 1  # convs + to_rgb1 + to_rgbs
        assert [s.shape for s in styles[:2]] == [(2, 32), (2, 32)]
        assert torch.equal(g.synthesis_from_styles(styles), g.synthesis(w_plus))
        edited = [s.clone() for s in styles]
        edited[5][:, 3] += 5.0
        assert float((g.synthesis_from_styles(edited) - g.synthesis(w_plus)).abs().max()) > 1e-3


def test_tiny_and_clamped_generator():
    g = Generator(size=8, style_dim=16, n_mlp=1, channel_multiplier=1, channel_max=8, conv_clamp=0.05)
    with torch.no_grad():
        img = g(torch.randn(2, 16), input_is="z")
    assert img.shape == (2, 3, 8, 8) and g.n_latent == 4
    # every to_rgb output is clamped to +-0.05 and there are two (4x4 and 8x8 upsampled with a gain-1 filter)
    assert float(img.abs().max()) <= 0.1 + 1e-6
    assert [n.split(".")[0] for n in g.frozen_for_out_of_domain()][0] == "convs"

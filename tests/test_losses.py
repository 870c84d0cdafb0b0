"""tcve.losses: masks, masked means, Eq. 1/4/6/7 terms, offline behaviour of the LPIPS backbone."""

from __future__ import annotations

import copy
import time

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tcve.errors import CheckpointUnavailable
from tcve.flow import warp
from tcve.losses import (
    SpatialLPIPS,
    fb_consistency_loss,
    flow_tv,
    fuse_masks,
    in_mask_loss,
    latent_residual_loss,
    local_regularizer,
    masked_mean,
    out_of_mask_loss,
    perceptual_difference_mask,
    photometric_loss,
)


@pytest.fixture(scope="module")
def lpips_rand() -> SpatialLPIPS:
    torch.manual_seed(0)
    return SpatialLPIPS("alex", backbone="random")


class TinyGenerator(nn.Module):
    """Stand-in with the tcve Generator interface (mapping / synthesis), 64x64 output."""

    def __init__(self, style_dim: int = 16, n_latent: int = 4) -> None:
        super().__init__()
        self.style_dim, self.n_latent, self.size = style_dim, n_latent, 64
        self.map = nn.Sequential(nn.Linear(style_dim, style_dim), nn.LeakyReLU(0.2), nn.Linear(style_dim, style_dim))
        self.register_buffer("latent_avg", torch.zeros(style_dim))
        self.synth = nn.Linear(n_latent * style_dim, 3 * 16 * 16)

    def mapping(self, z: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        w = self.map(z)
        return self.latent_avg + truncation * (w - self.latent_avg)

    def synthesis(self, w_plus: torch.Tensor, noise_mode: str = "const") -> torch.Tensor:
        self.last_w_plus = w_plus
        img = torch.tanh(self.synth(w_plus.flatten(1))).view(-1, 3, 16, 16)
        return F.interpolate(img, size=64, mode="bilinear", align_corners=False)


def _images(b: int = 1, s: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.rand(b, 3, s, s) * 2 - 1, torch.rand(b, 3, s, s) * 2 - 1


def test_spatial_lpips_map_shape_zero_on_identical(lpips_rand):
    x, y = _images(2)
    d = lpips_rand(x, y)
    assert d.shape == (2, 1, 64, 64) and (d >= 0).all() and d.mean() > 0
    assert lpips_rand(x, x).abs().max() < 1e-6
    assert all(not p.requires_grad for p in lpips_rand.parameters())


def test_spatial_lpips_gradient_reaches_inputs(lpips_rand):
    x, y = _images()
    x.requires_grad_(True)
    lpips_rand(x, y).mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_pretrained_backbone_offline_raises_fast_and_clearly(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("TCVE_CHECKPOINT_DIR", raising=False)
    for offline in ("1", None):  # HF_HUB_OFFLINE honoured; without it the socket guard blocks the download
        if offline is None:
            monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        else:
            monkeypatch.setenv("HF_HUB_OFFLINE", offline)
        start = time.perf_counter()
        with pytest.raises(CheckpointUnavailable) as info:
            SpatialLPIPS("alex", backbone="pretrained")
        assert time.perf_counter() - start < 2.0
        assert "alexnet-owt-7be5be79.pth" in str(info.value) and "TCVE_CHECKPOINT_DIR" in str(info.value)


def test_backbone_from_state_dict_and_cache(monkeypatch, tmp_path):
    import torchvision

    torch.manual_seed(1)
    features = torchvision.models.alexnet().features
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    model = SpatialLPIPS("alex", backbone=state)
    torch.testing.assert_close(getattr(model.model.net.slice2, "3").weight, features[3].weight)
    torch.testing.assert_close(getattr(model.model.net.slice5, "10").bias, features[10].bias)
    # a file path, read with tcve's safe loader
    pytest.importorskip("tcve.models.serialization")
    torch.save(state, tmp_path / "alexnet.pth")
    from_file = SpatialLPIPS("alex", backbone=tmp_path / "alexnet.pth")
    torch.testing.assert_close(getattr(from_file.model.net.slice1, "0").weight, features[0].weight)
    # 'pretrained' asks the checkpoint registry for the backbone by name
    import tcve.checkpoints

    asked = []
    monkeypatch.setattr(tcve.checkpoints, "fetch", lambda name: asked.append(name) or tmp_path / "alexnet.pth")
    SpatialLPIPS("alex", backbone="pretrained")
    assert asked == ["lpips-alex-backbone"]
    with pytest.raises(CheckpointUnavailable):
        SpatialLPIPS("alex", backbone=tmp_path / "missing.pth")


def test_masked_mean_known_values():
    value = torch.arange(8.0).view(1, 2, 2, 2)  # channel 0: 0..3, channel 1: 4..7
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    assert masked_mean(value, mask).item() == pytest.approx((0 + 3 + 4 + 7) / 4)
    assert masked_mean(value, torch.zeros_like(mask)).item() == 0.0


def test_pd_mask_and_fusion(lpips_rand):
    x, y = _images()
    pd = perceptual_difference_mask(lpips_rand, x, y, size=(32, 32))
    assert pd.shape == (1, 1, 32, 32) and pd.min() >= 0 and pd.mean() > 0
    assert perceptual_difference_mask(lpips_rand, x, x).abs().max() < 1e-6
    fused = fuse_masks(torch.rand(1, 1, 32, 32), pd * 100)
    assert fused.min() >= 0 and fused.max() <= 1 and fused.max() == 1


@pytest.mark.parametrize("rng", ["255", "unit"])
def test_photometric_loss_zero_on_consistent_pair_positive_otherwise(lpips_rand, rng):
    x, y = _images()
    zero = torch.zeros(1, 2, 64, 64)
    ones = torch.ones(1, 1, 64, 64)
    assert photometric_loss(lpips_rand, x, x, zero, zero, ones, ones, lpips_input_range=rng,
                            warp_convention="aligned").item() < 1e-6
    # the official warp (default) stretches by a sub-pixel and zeroes the edge ring: not an identity at zero flow
    assert photometric_loss(lpips_rand, x, x, zero, zero, ones, ones, lpips_input_range=rng).item() > 1e-4
    assert photometric_loss(lpips_rand, x, y, zero, zero, ones, ones, lpips_input_range=rng).item() > 1e-3
    # frame i is frame a translated by 3 px: with the true flows the loss is only the border strip
    shift = torch.zeros(1, 2, 64, 64)
    shift[:, 0] = 3.0
    xi = warp(x, shift)  # x_i(p) = x_a(p + 3): flow i->a = +3, a->i = -3
    good = photometric_loss(lpips_rand, x, xi, -shift, shift, ones, ones, lpips_input_range=rng)
    bad = photometric_loss(lpips_rand, x, xi, zero, zero, ones, ones, lpips_input_range=rng)
    assert good < 0.5 * bad


def test_photometric_range_option_changes_value(lpips_rand):
    x, y = _images()
    zero, ones = torch.zeros(1, 2, 64, 64), torch.ones(1, 1, 64, 64)
    a = photometric_loss(lpips_rand, x, y, zero, zero, ones, ones, lpips_input_range="255")
    b = photometric_loss(lpips_rand, x, y, zero, zero, ones, ones, lpips_input_range="unit")
    assert abs(a.item() - b.item()) > 1e-4
    with pytest.raises(ValueError):
        photometric_loss(lpips_rand, x, y, zero, zero, ones, ones, lpips_input_range="01")


def test_latent_residual_loss_modes():
    assert latent_residual_loss(torch.zeros(2, 18, 512)).item() == 0
    d = torch.full((2, 4, 8), -0.5)
    assert latent_residual_loss(d, "mean").item() == pytest.approx(0.5)
    assert latent_residual_loss(d, "l1").item() == pytest.approx(0.5 * 32)


def test_fb_consistency_loss_modes():
    z, m = torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8)
    assert fb_consistency_loss(z, z, m, m).item() == 0 and fb_consistency_loss(z, z, mode="l1").item() == 0
    e = torch.rand(1, 1, 8, 8) + 0.1
    assert fb_consistency_loss(e, e, m, m).item() == pytest.approx(2 * e.mean().item(), rel=1e-5)
    half = torch.zeros(1, 1, 8, 8)
    half[..., :4] = 1
    assert fb_consistency_loss(e, e, half, half).item() == pytest.approx(2 * e[..., :4].mean().item(), rel=1e-5)
    with pytest.raises(ValueError):
        fb_consistency_loss(e, e)


def test_out_and_in_mask_losses(lpips_rand):
    x, y = _images()
    pd = torch.rand(1, 1, 64, 64) * 0.5
    assert out_of_mask_loss(lpips_rand, x, x, pd).item() < 1e-6
    assert out_of_mask_loss(lpips_rand, x, y, pd).item() > 1e-3
    # a full edit mask leaves nothing outside it to preserve
    assert out_of_mask_loss(lpips_rand, x, y, torch.ones(1, 1, 64, 64)).item() == 0
    assert out_of_mask_loss(lpips_rand, x, y, pd, power=1.0, clamp=True).item() > 1e-3
    assert in_mask_loss(lpips_rand, x, x, pd).item() < 1e-6 and in_mask_loss(lpips_rand, x, y, pd).item() > 0


def test_flow_tv():
    assert flow_tv(torch.full((1, 2, 8, 8), 3.0)).item() == 0
    f = torch.zeros(1, 2, 8, 8)
    f[..., 4:] = 1.0  # one vertical edge in both channels
    assert flow_tv(f).item() == pytest.approx(2 * 8 / (2 * 8 * 7))


def test_local_regularizer_zero_for_same_generator_positive_after_perturbation(lpips_rand):
    g_frozen = TinyGenerator().eval()
    g_tuned = copy.deepcopy(g_frozen)
    w_center = torch.randn(1, 4, 16)
    gen = torch.Generator().manual_seed(3)
    assert local_regularizer(g_tuned, g_frozen, w_center, lpips_rand, generator=gen).item() < 1e-7
    # the sample lies at Frobenius distance alpha from the centre
    dist = (g_tuned.last_w_plus - w_center).flatten(1).norm(dim=1)
    torch.testing.assert_close(dist, torch.full_like(dist, 30.0), rtol=1e-5, atol=1e-4)
    with torch.no_grad():
        g_tuned.synth.weight.add_(0.05 * torch.randn_like(g_tuned.synth.weight))
    loss = local_regularizer(g_tuned, g_frozen, w_center[0], lpips_rand, alpha=5.0, n_samples=2,
                             l2_weight=1.0, lpips_weight=1.0)
    assert loss.item() > 1e-4
    loss.backward()
    assert g_tuned.synth.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in g_frozen.parameters())


def test_local_regularizer_with_tcve_generator(lpips_rand):
    stylegan2 = pytest.importorskip("tcve.models.stylegan2")
    g_frozen = stylegan2.Generator(size=64, style_dim=64, n_mlp=2, channel_multiplier=1, channel_max=64).eval()
    g_tuned = copy.deepcopy(g_frozen)
    w_center = g_frozen.mapping(torch.randn(1, 64)).unsqueeze(1).repeat(1, g_frozen.n_latent, 1)
    assert local_regularizer(g_tuned, g_frozen, w_center, lpips_rand).item() < 1e-7
    with torch.no_grad():
        for p in g_tuned.parameters():
            p.add_(0.02 * torch.randn_like(p))
    loss = local_regularizer(g_tuned, g_frozen, w_center, lpips_rand)
    assert loss.item() > 1e-6
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in g_tuned.parameters())

"""Deep Video Prior baseline: it fits the processed video, and the fit is steadier than a flickering one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tcve.dvp import DVPConfig, DVPUNet, apply_dvp, deep_video_prior, fit_dvp
from tcve.metrics import warping_error_from_flows

T, S, SHIFT = 6, 32, 4

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def video() -> dict[str, torch.Tensor]:
    """A smooth texture panning right by SHIFT px per frame, a colour 'edit' of it, and that edit with flicker."""
    g = torch.Generator().manual_seed(0)
    strip = F.interpolate(torch.rand(1, 3, 8, 8 + T, generator=g), size=(S, S + SHIFT * T), mode="bilinear",
                          align_corners=False)[0] * 2 - 1
    inputs = torch.stack([strip[:, :, SHIFT * (T - t):SHIFT * (T - t) + S] for t in range(T)])
    processed = inputs[:, [2, 1, 0]] * 0.7 + 0.1
    flicker = torch.randn(T, 3, 1, 1, generator=g) * 0.2  # a per-frame colour cast: the inconsistency DVP removes
    fw = torch.zeros(T - 1, 2, S, S)
    fw[:, 0] = SHIFT  # frame t's pixel p is at p + SHIFT (x) in frame t+1
    return {"inputs": inputs, "processed": processed, "flickering": (processed + flicker).clamp(-1, 1),
            "fw": fw, "bw": -fw}


def test_unet_keeps_shape_and_needs_multiples_of_16():
    net = DVPUNet(width=4)
    assert net(torch.rand(2, 3, 48, 32)).shape == (2, 3, 48, 32)
    assert DVPConfig().coarse_epochs() == 19  # official: epochs 1..19 of 25 on subsampled frames
    assert DVPConfig(coarse_to_fine=False).coarse_epochs() == 0


def test_dvp_fits_the_edit_and_removes_flicker(video):
    # Official loss, schedule and coarse-to-fine epochs, one frame per step; a narrower U-Net and, as 6 frames give
    # 240 steps where a real clip gives thousands, a 10x higher learning rate.
    cfg = DVPConfig(width=8, epochs=40, lr=1e-3)
    fit = fit_dvp(video["inputs"], video["flickering"], cfg)
    out = apply_dvp(fit, video["inputs"], cfg)
    assert out.shape == video["inputs"].shape and out.min() >= -1 and out.max() <= 1
    assert len(fit.losses) == 40 and fit.losses[-1] < 0.5 * fit.losses[0]

    processed = video["processed"]
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed)
        untrained = DVPUNet(cfg.width)((video["inputs"] + 1) / 2).clamp(0, 1) * 2 - 1
    l1 = (out - processed).abs().mean()
    assert l1 < 0.3 * (untrained - processed).abs().mean()
    assert l1 < 0.6 * (video["inputs"] - processed).abs().mean()

    werr_out = warping_error_from_flows(out, video["fw"], video["bw"]).mean
    werr_flicker = warping_error_from_flows(video["flickering"], video["fw"], video["bw"]).mean
    assert werr_out < 0.5 * werr_flicker


def test_dvp_is_seeded_and_resizes(video):
    cfg = DVPConfig(epochs=2, width=4, max_size=32)
    inputs, target = video["inputs"][:3], video["flickering"][:3]
    big_in = F.interpolate(inputs, scale_factor=2.0, mode="bilinear", align_corners=False)
    big_target = F.interpolate(target, scale_factor=2.0, mode="bilinear", align_corners=False)
    a = deep_video_prior(big_in, big_target, cfg)
    b = deep_video_prior(big_in, big_target, cfg)
    c = deep_video_prior(big_in, big_target, DVPConfig(epochs=2, width=4, max_size=32, seed=1))
    assert a.shape == big_in.shape  # trained at 32 px, returned at 64 px
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-4
    # sizes that are not multiples of 32 are padded, then cropped back
    odd = deep_video_prior(inputs[..., :30, :28], target[..., :30, :28], DVPConfig(epochs=1, width=4))
    assert odd.shape == (3, 3, 30, 28)
    with pytest.raises(ValueError):
        fit_dvp(inputs, target[:2], cfg)

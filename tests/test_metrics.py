"""tcve.metrics: Lai et al. warping error, occlusion mask, LPIPS fidelity, x-t slice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tcve.flow import DisFlow, warp
from tcve.losses import SpatialLPIPS
from tcve.metrics import (
    frames_to_images,
    images_to_frames,
    lai_non_occlusion_mask,
    lpips_fidelity,
    warping_error,
    warping_error_from_flows,
    xt_slice,
)


def _texture_video(t: int = 5, h: int = 64, w: int = 64, step: int = 0, seed: int = 0) -> torch.Tensor:
    """[T,3,H,W] in [-1,1]: a smooth texture translated by `step` px per frame to the left."""
    import cv2

    rng = np.random.default_rng(seed)
    big = cv2.GaussianBlur(rng.random((h, w + step * t, 3)).astype(np.float32), (0, 0), 2.0)
    big = (big - big.min()) / (big.max() - big.min())
    frames = np.stack([big[:, i * step:i * step + w] for i in range(t)])
    return torch.from_numpy(frames).permute(0, 3, 1, 2) * 2 - 1


def test_frames_roundtrip():
    frames = np.random.default_rng(0).integers(0, 256, (3, 8, 10, 3), dtype=np.uint8)
    images = frames_to_images(frames)
    assert images.shape == (3, 3, 8, 10) and images.min() >= -1 and images.max() <= 1
    assert np.array_equal(images_to_frames(images), frames)
    assert torch.equal(frames_to_images(list(frames)), images)
    with pytest.raises(ValueError):
        frames_to_images(frames.astype(np.float32))


def test_warping_error_zero_on_static_clip_and_monotone_in_flicker():
    clean = _texture_video()
    zero = torch.zeros(4, 2, 64, 64)
    assert warping_error_from_flows(clean, zero, zero).mean < 1e-12
    dis = DisFlow("fast")
    static = warping_error(clean, clean, dis)
    assert static.per_pair.shape == (4,) and static.mean < 1e-6
    values = []
    for amp in (0.02, 0.05, 0.1, 0.2):
        flicker = torch.tensor([amp * (-1) ** i for i in range(5)]).view(5, 1, 1, 1)
        values.append(warping_error(clean + flicker, clean, dis).mean)  # flows from the input video
    assert all(b > a for a, b in zip(values, values[1:])) and values[0] > 1e-4
    # brightness step of 2*amp in [-1,1] = amp in [0,1]: squared error amp^2 on visible pixels (per-channel mean)
    assert values[-1] == pytest.approx(0.2**2, rel=0.05)


def test_warping_error_zero_for_exact_motion_with_true_flows():
    video = _texture_video(step=2)  # frame t+1(p) = frame t(p + 2)
    fw = torch.zeros(4, 2, 64, 64)
    fw[:, 0] = -2.0  # frame t(p) = frame t+1(p - 2)
    result = warping_error_from_flows(video, fw, -fw, padding_mode="zeros")
    assert result.mean < 1e-10
    # the 2 px strip entering from the left is flagged (its samples fall outside frame t+1)
    assert result.visible_fraction == pytest.approx(np.full(4, 62 / 64))
    # Lai's border clamping keeps that strip and compares it with replicated border pixels: small, not zero
    lai = warping_error_from_flows(video, fw, -fw)
    assert lai.visible_fraction == pytest.approx(np.ones(4)) and 0 < lai.mean < 0.1 * (2 / 64)
    assert warping_error_from_flows(video, torch.zeros_like(fw), torch.zeros_like(fw)).mean > 1e-3


def test_lai_mask_flags_occluded_region_and_motion_boundary():
    fw = torch.zeros(1, 2, 40, 40)
    fw[:, 0, 10:20, 10:20] = 4.0  # a square moves right and lands on static background
    bw = torch.zeros(1, 2, 40, 40)
    mask = lai_non_occlusion_mask(fw, bw)
    assert mask.shape == (1, 1, 40, 40) and set(mask.unique().tolist()) <= {0.0, 1.0}
    assert mask[..., 10:20, 10:20].max() == 0  # fw + bw(p+fw) = 4 px: occluded
    assert mask[..., 10:20, 9].max() == 0  # motion boundary just left of the square
    assert mask[..., 25:, 25:].min() == 1 and mask[..., :8, :8].min() == 1
    # consistent translation: nothing flagged except samples leaving the frame
    fw_t = torch.zeros(1, 2, 40, 40)
    fw_t[:, 1] = 3.0
    assert lai_non_occlusion_mask(fw_t, -fw_t).min() == 1  # border-clamped samples agree
    m = lai_non_occlusion_mask(fw_t, -fw_t, padding_mode="zeros")
    assert m[..., :-3, :].min() == 1 and m[..., -3:, :].max() == 0


def test_lpips_fidelity_zero_for_identical_positive_otherwise():
    lpips = SpatialLPIPS("alex", backbone="random", spatial=False)
    a = _texture_video(t=3)
    same = lpips_fidelity(a, a.clone(), lpips, batch_size=2)
    assert same.per_frame.shape == (3,) and same.mean < 1e-6
    b = a.clone()
    b[1] = -b[1]
    diff = lpips_fidelity(a, b, lpips)
    assert diff.per_frame[1] > 1e-3 and diff.per_frame[0] < 1e-6 and diff.mean == pytest.approx(diff.per_frame.mean())


def test_xt_slice():
    video = _texture_video(t=6, step=1)
    xt = xt_slice(video, row=5)
    assert xt.shape == (6, 64, 3) and xt.dtype == np.uint8
    assert np.array_equal(xt[2], images_to_frames(video)[2, 5])
    assert xt_slice(images_to_frames(video)).shape == (6, 64, 3)
    with pytest.raises(ValueError):
        xt_slice(video, row=64)


def test_warp_used_by_metrics_matches_flow_convention():
    video = _texture_video(t=2, step=3)
    fw = torch.zeros(1, 2, 64, 64)
    fw[:, 0] = -3.0
    torch.testing.assert_close(warp(video[1:], fw)[..., 3:], video[:1, ..., 3:], atol=1e-5, rtol=0)

"""tcve.flow: warping, forward-backward consistency, visibility masks, RAFT wrapper and DIS."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tcve.flow import DisFlow, RaftFlow, fb_consistency_error, load_flow_estimator, visibility_mask, warp


def _const_flow(dx: float, dy: float, b: int = 1, h: int = 24, w: int = 32) -> torch.Tensor:
    flow = torch.zeros(b, 2, h, w)
    flow[:, 0], flow[:, 1] = dx, dy
    return flow


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random RGB texture, uint8 [H,W,3] (blurred noise: trackable by DIS)."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.random((h, w, 3)).astype(np.float32)
    return (cv2.GaussianBlur(noise, (0, 0), 2.0) * 255).clip(0, 255).astype(np.uint8)


def test_warp_zero_flow_is_identity():
    x = torch.randn(2, 3, 24, 32)
    # exact up to float rounding of the grid normalisation
    torch.testing.assert_close(warp(x, torch.zeros(2, 2, 24, 32)), x, atol=1e-5, rtol=0)


def test_warp_integer_translation_exact_inside_and_zero_outside():
    x = torch.randn(1, 3, 24, 32)
    out = warp(x, _const_flow(3, -2))  # out(y, x) = x(y - 2, x + 3)
    torch.testing.assert_close(out[:, :, 2:, :-3], x[:, :, :-2, 3:], atol=1e-5, rtol=0)
    assert out[:, :, :, -3:].abs().max() < 1e-5  # samples right of the image
    assert out[:, :, :2, :].abs().max() < 1e-5  # samples above the image


def test_warp_broadcasts_batch_of_one():
    x = torch.randn(1, 3, 8, 8)
    flows = torch.stack([torch.zeros(2, 8, 8), torch.ones(2, 8, 8)])
    out = warp(x, flows)
    assert out.shape == (2, 3, 8, 8)
    torch.testing.assert_close(out[1, :, :-1, :-1], x[0, :, 1:, 1:], atol=1e-5, rtol=0)
    assert warp(torch.randn(3, 1, 8, 8), torch.zeros(1, 2, 8, 8)).shape == (3, 1, 8, 8)


def test_warp_rejects_mismatched_flow():
    with pytest.raises(ValueError):
        warp(torch.zeros(1, 3, 8, 8), torch.zeros(1, 2, 8, 9))


def test_official_warp_zero_flow_by_hand():
    # official flow_warp: grid / (W-1) with align_corners=False samples pixel x at x*W/(W-1) - 0.5.
    # W = 5: x=1 -> 0.75, x=2 -> 2.0, x=3 -> 3.25; x=0 -> -0.5 and x=4 -> 4.5 touch the edge -> 0.
    # H = 3: y=1 -> 1.0; y=0 -> -0.5 and y=2 -> 2.5 touch the edge -> 0.
    x = torch.tensor([0.0, 10.0, 20.0, 30.0, 40.0]).expand(1, 1, 3, 5).contiguous()
    out = warp(x, torch.zeros(1, 2, 3, 5), convention="official")
    expected = torch.zeros(1, 1, 3, 5)
    expected[0, 0, 1] = torch.tensor([0.0, 7.5, 20.0, 32.5, 0.0])   # 0.25*0 + 0.75*10, 20, 0.75*30 + 0.25*40
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    # the aligned convention is an identity on the same input
    torch.testing.assert_close(warp(x, torch.zeros(1, 2, 3, 5)), x, atol=1e-5, rtol=0)


def _official_warp_numpy(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """The official convention written out per pixel: image [C,H,W], flow [2,H,W] -> [C,H,W]."""
    c, h, w = image.shape
    out = np.zeros_like(image)
    for y in range(h):
        for x in range(w):
            sx = (x + flow[0, y, x]) * w / (w - 1) - 0.5
            sy = (y + flow[1, y, x]) * h / (h - 1) - 0.5
            x0, y0 = int(np.floor(sx)), int(np.floor(sy))
            fx, fy = sx - x0, sy - y0
            value, weight_inside = np.zeros(c), 0.0
            for yy, wy in ((y0, 1 - fy), (y0 + 1, fy)):
                for xx, wx in ((x0, 1 - fx), (x0 + 1, fx)):
                    if 0 <= yy < h and 0 <= xx < w:
                        value += wy * wx * image[:, yy, xx]
                        weight_inside += wy * wx
            out[:, y, x] = value if weight_inside >= 0.9999 else 0.0
    return out


def test_official_warp_matches_the_convention_written_out():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 7, 9))
    flow = np.stack([rng.uniform(-2.5, 2.5, (7, 9)), rng.uniform(-2.5, 2.5, (7, 9))])
    expected = _official_warp_numpy(image, flow)
    out = warp(torch.from_numpy(image)[None].float(), torch.from_numpy(flow)[None].float(), convention="official")
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-5)
    assert (expected == 0).any() and (expected != 0).mean() > 0.3   # both kinds of pixels are exercised
    with pytest.raises(ValueError):
        warp(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 4, 4), convention="corners")
    with pytest.raises(ValueError):
        warp(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 4, 4), padding_mode="border", convention="official")


def test_official_warp_passes_gradients_to_image_and_flow():
    image = torch.randn(1, 3, 8, 8, requires_grad=True)
    flow = torch.full((1, 2, 8, 8), 0.3, requires_grad=True)
    warp(image, flow, convention="official").sum().backward()
    assert image.grad.abs().sum() > 0 and flow.grad.abs().sum() > 0


def test_fb_error_zero_for_consistent_translation_and_large_on_occlusion():
    fw, bw = _const_flow(2, 1), _const_flow(-2, -1)
    eps = fb_consistency_error(fw, bw)
    assert eps.shape == (1, 1, 24, 32)
    assert eps[..., :-1, :-2].max() < 1e-4  # interior: p + fw stays inside
    # leaving the frame: the sampled backward flow is 0, eps = |fw|
    torch.testing.assert_close(eps[..., -1, -1], torch.tensor([[5.0**0.5]]), atol=1e-4, rtol=0)
    # occlusion: the backward flow on a region of frame 2 disagrees (static there)
    bw_occ = bw.clone()
    bw_occ[..., 10:16, 12:20] = 0
    eps_occ = fb_consistency_error(fw, bw_occ)
    region = eps_occ[..., 9:15, 10:18]  # p + fw lands in frame 2's region
    torch.testing.assert_close(region, torch.full_like(region, 5.0**0.5), atol=1e-4, rtol=0)
    vis = visibility_mask(eps_occ, k=5.0)
    assert vis.min() >= 0 and vis.max() <= 1
    assert vis[..., 9:15, 10:18].max() < 1e-4 and vis[..., :5, :5].min() > 0.999
    assert visibility_mask(eps_occ, k=10.0)[..., 9:15, 10:18].max() < vis[..., 9:15, 10:18].max()


def test_dis_recovers_known_shift():
    big = _texture(160, 160)
    img1 = big[16:144, 16:144]
    img2 = big[16 - 2:144 - 2, 16 - 3:144 - 3]  # img2(p) = img1(p - (3, 2))  =>  flow 1->2 = (+3, +2)
    to_t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float() / 127.5 - 1  # noqa: E731
    flow = DisFlow("medium")(to_t(img1), to_t(img2))
    assert flow.shape == (1, 2, 128, 128) and flow.dtype == torch.float32
    inner = flow[0, :, 16:-16, 16:-16].flatten(1)
    assert abs(inner[0].median().item() - 3.0) < 0.2 and abs(inner[1].median().item() - 2.0) < 0.2


def test_raft_random_weights_shape_padding_and_gradient():
    raft = RaftFlow("small", weights=None, iters=3)
    a = (torch.rand(1, 3, 60, 76) * 2 - 1).requires_grad_(True)  # not /8 and < 128: padded inside
    b = (torch.rand(1, 3, 60, 76) * 2 - 1).requires_grad_(True)
    flow = raft(a, b)
    assert flow.shape == (1, 2, 60, 76) and torch.isfinite(flow).all()
    flow.abs().mean().backward()
    for img in (a, b):
        assert img.grad is not None and torch.isfinite(img.grad).all() and img.grad.abs().sum() > 0
    assert all(p.grad is None for p in raft.parameters())  # frozen weights


def test_raft_loads_state_dict_with_module_prefix():
    src = RaftFlow("small", iters=2)
    with torch.no_grad():
        for p in src.raft.parameters():
            p.add_(0.01 * torch.randn_like(p))
    dst = RaftFlow("small", weights={f"module.{k}": v for k, v in src.raft.state_dict().items()}, iters=2)
    a, b = torch.rand(1, 3, 128, 128) * 2 - 1, torch.rand(1, 3, 128, 128) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(dst(a, b), src(a, b), atol=1e-5, rtol=0)
    dst.train()
    assert not dst.raft.training  # BatchNorm in eval whatever the parent does


def test_load_flow_estimator_names():
    assert isinstance(load_flow_estimator("dis", dis_preset="fast"), DisFlow)
    with pytest.raises(ValueError):
        load_flow_estimator("flownet2")
    with pytest.raises(ValueError):
        DisFlow("slowest")

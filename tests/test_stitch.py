"""Stitch tuning (phase 3): STIT masks, and tuning that fixes the border while keeping the edited content."""

from __future__ import annotations

import torch

from tcve.models.stylegan2 import Generator
from tcve.stitch import StitchConfig, blend, ellipse_face_mask, stitch_masks, stitch_tune


def _tiny_generator() -> Generator:
    g = Generator(size=32, style_dim=32, n_mlp=2, channel_multiplier=1, channel_max=16).eval()
    g.requires_grad_(False)
    return g


def test_masks_partition_the_face_region() -> None:
    face = ellipse_face_mask(torch.zeros(2, 3, 64, 64))
    assert face.shape == (2, 1, 64, 64) and 0.2 < face.mean() < 0.6
    m = stitch_masks(face, 64)
    for t in (m.fg, m.full, m.border, m.content, m.alpha):
        assert t.shape == (2, 1, 64, 64) and t.min() >= 0 and t.max() <= 1
    # full contains fg, content lies inside fg and away from the border band; alpha is a shrunk, blurred full
    assert (m.full + 1e-4 >= m.fg).all()
    assert (m.content <= m.fg + 1e-4).all()
    assert (m.content * m.border).mean() < 0.02
    assert m.border.sum() > 0 and m.content.sum() > 0
    assert m.alpha.sum() < m.full.sum()
    # the crop edge band is border wherever fg reaches it (the face mask fills the crop after dilation)
    full_face = stitch_masks(torch.ones(1, 1, 64, 64), 64)
    assert full_face.border[..., 0, :].min() > 0.9 and full_face.content[..., 32, 32] > 0.9


def test_stitch_tuning_fixes_border_and_keeps_content() -> None:
    torch.manual_seed(0)
    g = _tiny_generator()
    w_orig = torch.randn(1, 1, 32).expand(1, g.n_latent, 32).contiguous()
    w_edit = w_orig + 0.8 * torch.randn(1, g.n_latent, 32)
    with torch.no_grad():
        crops = g.synthesis(w_orig)
        edited = g.synthesis(w_edit)
    # A toy generator changes globally: weigh the content term up so both goals are visible in 10 steps.
    cfg = StitchConfig(steps=10, lr=3e-3, content_weight=1.0)
    res = stitch_tune(g, w_edit, crops, cfg)
    m = res.masks
    assert res.images.shape == crops.shape and res.blended.shape == crops.shape

    def err(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
        return float(((a - b) * mask).pow(2).sum() / mask.sum())

    border_before = err(edited, crops, m.border)
    border_after = err(res.images, crops, m.border)
    content_drift = err(res.images, edited, m.content)
    content_gap = err(crops, edited, m.content)
    assert border_after < 0.5 * border_before, (border_before, border_after)
    assert content_drift < 0.25 * content_gap, (content_drift, content_gap)
    assert res.history["border_last"][0] < res.history["border_first"][0]
    # the caller's generator is untouched
    with torch.no_grad():
        torch.testing.assert_close(g.synthesis(w_edit), edited)
    torch.testing.assert_close(res.blended, blend(res.images, crops, m.alpha))


def _paste_case(paste: str):
    import cv2
    import numpy as np

    from tcve.align import AlignTransform, paste_frames, quad_from_axes
    from tcve.stitch import StitchResult, paste_alphas

    rng = np.random.default_rng(0)
    size = 64
    frame = rng.integers(0, 256, (200, 240, 3), dtype=np.uint8)
    crop = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    t = AlignTransform(quad_from_axes(np.array([120.0, 100.0]), np.array([50.0, 6.0])), size, (200, 240))
    masks = stitch_masks(ellipse_face_mask(torch.zeros(1, 3, size, size)), size)
    result = StitchResult(images=torch.zeros(1, 3, size, size), blended=torch.zeros(1, 3, size, size), masks=masks,
                          history={}, seconds=0.0)
    cfg = StitchConfig(paste=paste)
    out = next(paste_frames(iter([frame]), iter([crop]), [t], masks=paste_alphas(result, cfg), soften=False))
    # the dilated face mask 'full' and the paste alpha in frame coordinates
    to_frame = dict(dsize=(240, 200), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT)
    full = cv2.warpAffine(masks.full[0, 0].numpy(), t.frame_to_crop[:2], **to_frame)
    alpha = cv2.warpAffine(masks.alpha[0, 0].numpy(), t.frame_to_crop[:2], **to_frame)
    inside_quad = cv2.warpAffine(np.ones((size, size), np.float32), t.frame_to_crop[:2], **to_frame) > 0.999
    return frame, out, full, alpha, inside_quad


def test_phase3_pastes_inside_the_dilated_face_mask_only() -> None:
    frame, out, full, alpha, inside_quad = _paste_case("face_mask")
    outside = full == 0
    assert outside.sum() > 5000 and (outside & inside_quad).sum() > 500   # crop pixels outside the face mask exist
    assert (out[outside] == frame[outside]).all()                          # ... and come from the original frame
    core = alpha > 0.99
    assert core.sum() > 500 and (out[core] != frame[core]).any(axis=-1).mean() > 0.95   # the face is the crop's


def test_paste_option_crop_restores_the_whole_crop_paste() -> None:
    frame, out, full, _, inside_quad = _paste_case("crop")
    background = (full == 0) & inside_quad
    # generated background pasted too (measured 45%: the rest is the edge feather's zero inset)
    assert (out[background] != frame[background]).any(axis=-1).mean() > 0.3

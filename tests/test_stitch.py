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

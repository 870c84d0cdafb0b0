"""Latent-smoothing baseline (StyleGAN3-editing): fine rows averaged, 5-tap temporal kernel, frame count kept."""

from __future__ import annotations

import torch

from tcve.smoothing import SmoothingConfig, default_fine_from, smooth_latents


def _valid_sg3(ws: torch.Tensor) -> torch.Tensor:
    # StyleGAN3-editing's 'valid' filter (drops two frames per end), written out term by term.
    return (ws[2:-2] + 0.75 * ws[3:-1] + 0.75 * ws[1:-3] + 0.25 * ws[:-4] + 0.25 * ws[4:]) / 3


def test_shape_kept_and_fine_rows_averaged() -> None:
    w = torch.randn(11, 18, 8)
    out = smooth_latents(w)
    assert out.shape == w.shape
    assert default_fine_from(18) == 8
    # fine rows: the clip mean (then filtering a constant leaves it unchanged)
    torch.testing.assert_close(out[:, 8:], w[:, 8:].mean(0, keepdim=True).expand(11, -1, -1), atol=1e-5, rtol=0)


def test_interior_matches_stylegan3_kernel_and_ends_are_padded() -> None:
    w = torch.randn(9, 18, 4)
    out = smooth_latents(w, SmoothingConfig(average_fine=False))
    torch.testing.assert_close(out[2:-2], _valid_sg3(w), atol=1e-5, rtol=0)
    # replicate padding at the ends: frame 0 sees w0 three times on its left
    first = (0.25 * w[0] + 0.75 * w[0] + w[0] + 0.75 * w[1] + 0.25 * w[2]) / 3
    torch.testing.assert_close(out[0], first, atol=1e-5, rtol=0)


def test_constant_clip_unchanged_and_jitter_reduced() -> None:
    const = torch.randn(1, 10, 6).expand(7, -1, -1).contiguous()
    torch.testing.assert_close(smooth_latents(const), const, atol=1e-5, rtol=0)
    jitter = const + 0.3 * torch.randn(7, 10, 6)
    out = smooth_latents(jitter, SmoothingConfig(average_fine=False))
    before = (jitter[1:] - jitter[:-1]).pow(2).mean()
    after = (out[1:] - out[:-1]).pow(2).mean()
    assert after < 0.35 * before, (before.item(), after.item())
    # short clips (T < kernel) still keep every frame
    assert smooth_latents(torch.randn(2, 10, 6), SmoothingConfig(pad="reflect")).shape == (2, 10, 6)

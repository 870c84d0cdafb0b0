"""tcve.text: the CLIP embedding protocol, the tiny test CLIP, and registry loading without downloads."""

from __future__ import annotations

import pytest
import torch

from tcve.errors import CheckpointUnavailable
from tcve.text import TextImageEmbedder, load_clip, text_direction, text_embedding, tiny_clip


@pytest.fixture(scope="module")
def clip():
    return tiny_clip(embed_dim=32, seed=0)


def test_tiny_clip_implements_the_protocol(clip):
    assert isinstance(clip, TextImageEmbedder)
    t = clip.encode_text(["a face", "a face with eyeglasses", "a sketch"])
    assert t.shape == (3, 32) and clip.embed_dim == 32
    assert torch.allclose(t.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert not torch.allclose(t[0], t[1])
    for size in (32, 64, 17):  # any input size: resized inside
        e = clip.encode_image(torch.rand(2, 3, size, size) * 2 - 1)
        assert e.shape == (2, 32) and torch.allclose(e.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_image_embedding_is_differentiable(clip):
    image = (torch.rand(1, 3, 64, 64) * 2 - 1).requires_grad_(True)
    target = clip.encode_text(["a smiling face"])[0]
    (clip.encode_image(image)[0] @ target).backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert all(p.grad is None for p in clip.parameters())  # CLIP itself is frozen


def test_tiny_clip_is_seeded_and_leaves_the_global_rng_alone():
    torch.manual_seed(5)
    expected = torch.rand(1)
    torch.manual_seed(5)
    a = tiny_clip(seed=3)
    after = torch.rand(1)
    b = tiny_clip(seed=3)
    assert torch.equal(expected, after)
    assert torch.equal(a.encode_text(["x"]), b.encode_text(["x"]))


def test_text_direction_is_unit_and_antisymmetric(clip):
    d = text_direction(clip, "face", "face with a beard")
    assert d.shape == (32,) and abs(float(d.norm()) - 1) < 1e-5
    assert torch.allclose(text_direction(clip, "face with a beard", "face"), -d, atol=1e-5)
    e = text_embedding(clip, "face")
    assert abs(float(e.norm()) - 1) < 1e-5


def test_load_clip_never_downloads_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TCVE_CHECKPOINT_DIR", str(tmp_path))  # empty: not provided locally
    with pytest.raises(CheckpointUnavailable, match="clip-vit-b-32"):
        load_clip()


def test_load_clip_reads_registry_weights_into_open_clip(monkeypatch, tmp_path):
    import open_clip
    from safetensors.torch import save_file

    reference = tiny_clip(seed=1)
    save_file({k: v.contiguous() for k, v in reference.model.state_dict().items()},
              str(tmp_path / "open_clip_model.safetensors"))
    calls = {}

    def small_create_model(name, pretrained=None, force_quick_gelu=False, **kw):
        # stands in for the 151M-parameter ViT-B-32 build; checks how tcve asks open_clip for it
        calls.update(name=name, pretrained=pretrained, quick_gelu=force_quick_gelu)
        return tiny_clip(seed=2).model

    monkeypatch.setattr(open_clip, "create_model", small_create_model)
    monkeypatch.setenv("TCVE_CHECKPOINT_DIR", str(tmp_path))
    loaded = load_clip("clip-vit-b-32")
    assert calls == {"name": "ViT-B-32", "pretrained": None, "quick_gelu": True}
    image = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(loaded.encode_image(image), reference.encode_image(image), atol=1e-6)
    assert torch.allclose(loaded.encode_text(["a face"]), reference.encode_text(["a face"]), atol=1e-6)

"""tcve.edit with tiny random networks: the catalogue, each edit kind, identity at strength 0, rows, free text."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tcve import checkpoints
from tcve.edit import (
    EDITS,
    EditConfig,
    EditLoaders,
    EditSpec,
    NadaTrainConfig,
    TextEditConfig,
    UnknownEdit,
    apply_edit,
    available_edits,
    blend_generators,
    edit_availability,
    load_direction,
    resolve_source,
    row_indices,
)
from tcve.errors import CheckpointUnavailable, TcveError
from tcve.invert import render
from tcve.models import Generator
from tcve.models.mapper import LevelsMapper
from tcve.text import TinyEmbedder

D = 64
N_LATENT = 10  # a 64 px generator: coarse 0-3, medium 4-7, fine 8-9


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_generator(seed: int) -> Generator:
    torch.manual_seed(seed)
    g = Generator(size=64, style_dim=D, n_mlp=2, channel_multiplier=1, channel_max=16).eval()
    g.latent_avg.copy_(g.mean_latent(256))
    return g.requires_grad_(False)


@pytest.fixture(scope="module")
def inversion():
    g = tiny_generator(0)
    torch.manual_seed(1)
    with torch.no_grad():
        w = g.mapping(torch.randn(3, D))[:, None].expand(-1, N_LATENT, -1).clone()
    w = w + 0.05 * torch.randn_like(w)  # W+ codes, not plain W
    return w, g


@pytest.fixture(scope="module")
def directions():
    torch.manual_seed(2)
    return {"interfacegan-eyeglasses": torch.randn(1, D), "interfacegan-smiling": torch.randn(1, D),
            "interfacegan-young": torch.randn(1, D), ("directions-styleganex", "pose"): torch.randn(N_LATENT, D)}


def loaders_for(directions=None, generators=None, mappers=None, available=(), clip=None) -> EditLoaders:
    def direction(name, key):
        return directions[(name, key)] if key else directions[name]

    return EditLoaders(mapper=lambda name: mappers[name], direction=direction,
                       generator=lambda name: generators[name], clip=clip,
                       is_available=lambda name: name in set(available))


# ----------------------------------------------------------------------------- catalogue


def test_catalogue_covers_the_paper_and_uses_registered_checkpoints():
    for name in ("eyeglasses", "angry", "surprised", "beard", "depp", "age", "smile", "pose", "sketch", "pixar",
                 "disney princess", "elf", "zombie", "text", "text style"):
        assert name in EDITS, name
    for entry in EDITS.values():
        for source in entry.sources:
            assert checkpoints.get(source.checkpoint).name == source.checkpoint
            lo, hi = source.strength_range
            assert lo <= source.default_strength <= hi
    assert [s.checkpoint for s in EDITS["eyeglasses"].sources] == [
        "mapper-eyeglasses", "interfacegan-eyeglasses", "directions-styleganex"]
    assert EDITS["eyeglasses"].sources[0].default_strength == 0.15  # VideoEditGAN's factor
    assert EDITS["angry"].sources[0].rows == ("coarse", "medium")  # trained without the fine mapper
    assert EDITS["depp"].sources[0].rows == ("coarse", "medium", "fine")
    assert {EDITS[n].kind for n in ("sketch", "pixar", "elf", "zombie", "disney princess")} == {"nada"}
    assert EDITS["age"].sources[0].scale == -1.0  # positive = older = minus 'Young'
    assert row_indices(18, ["fine"]) == tuple(range(8, 18)) and row_indices(10, ["coarse", "medium"]) == tuple(range(8))


def test_availability_and_fallbacks():
    only = {"interfacegan-eyeglasses", "nada-sketch", "clip-vit-b-32"}
    src = resolve_source("eyeglasses", lambda n: n in only)
    assert src.kind == "direction" and src.checkpoint == "interfacegan-eyeglasses"
    names = available_edits(is_available=lambda n: n in only)
    assert set(names) == {"eyeglasses", "sketch", "text", "text style"}
    assert available_edits("out", is_available=lambda n: n in only) == ["sketch", "text style"]
    avail = edit_availability(is_available=lambda n: n in only)
    assert avail["angry"] is None and avail["eyeglasses"] is src
    with pytest.raises(CheckpointUnavailable, match="mapper-angry"):
        resolve_source("angry", lambda n: False)
    with pytest.raises(UnknownEdit):
        resolve_source("no such edit")
    assert resolve_source("Disney_Princess", lambda n: True).checkpoint == "nada-disney-princess"


def test_load_direction_from_local_files(monkeypatch, tmp_path):
    np.save(tmp_path / "boundary_Eyeglasses.npy", np.arange(512, dtype=np.float32)[None])
    torch.save({"pose": torch.ones(1, 18, 512), "smile": torch.zeros(18, 512)}, tmp_path / "direction_dics.pt")
    monkeypatch.setenv("TCVE_CHECKPOINT_DIR", str(tmp_path))
    d = load_direction("interfacegan-eyeglasses")
    assert d.shape == (512,) and float(d[5]) == 5.0
    assert load_direction("directions-styleganex", "pose").shape == (18, 512)
    with pytest.raises(TcveError, match="no entry"):
        load_direction("directions-styleganex", "missing")


# ----------------------------------------------------------------------------- in-domain


def test_mapper_edit_changes_only_its_rows_and_strength_zero_is_identity(inversion):
    w, g = inversion
    torch.manual_seed(3)
    mapper = LevelsMapper(no_fine=True, n_latent=N_LATENT, style_dim=D).eval()
    loaders = loaders_for(mappers={"mapper-angry": mapper}, available={"mapper-angry"})
    res = apply_edit(EditSpec("angry", 0.1), w, g, loaders=loaders)
    assert res.kind == "mapper" and res.generator is g and res.mapper is mapper
    assert res.rows == tuple(range(8))
    changed = (res.w_plus - w).abs().amax(dim=(0, 2))
    assert torch.all(changed[:8] > 0) and torch.all(changed[8:] == 0)  # fine rows untouched, exactly
    with torch.no_grad():
        assert torch.allclose(res.w_plus, w + 0.1 * mapper(w), atol=1e-6)
    assert res.images.shape == (3, 3, 64, 64)
    assert (res.images - render(g, w)).abs().mean() > 1e-4  # the edit shows in the output
    zero = apply_edit(EditSpec("angry", 0.0), w, g, loaders=loaders)
    assert torch.equal(zero.w_plus, w) and zero.generator is g
    assert torch.equal(zero.images, render(g, w))


def test_direction_edits_touch_their_rows(inversion, directions):
    w, g = inversion
    avail = {"interfacegan-eyeglasses", "interfacegan-smiling", "interfacegan-young", "directions-styleganex"}
    loaders = loaders_for(directions, available=avail)
    glasses = apply_edit(EditSpec("eyeglasses", 2.0), w, g, loaders=loaders)  # fallback: W direction, rows 0-7
    assert glasses.kind == "direction" and glasses.checkpoint == "interfacegan-eyeglasses"
    assert "fallback" in glasses.note
    delta = glasses.w_plus - w
    assert torch.allclose(delta[:, :8], 2.0 * directions["interfacegan-eyeglasses"].expand(3, 8, D), atol=1e-6)
    assert torch.all(delta[:, 8:] == 0)
    smile = apply_edit(EditSpec("smile"), w, g, loaders=loaders)  # default strength, all rows
    assert smile.strength == 3.0 and smile.rows == tuple(range(N_LATENT))
    assert torch.allclose(smile.w_plus - w, 3.0 * directions["interfacegan-smiling"].expand(3, N_LATENT, D), atol=1e-5)
    older = apply_edit(EditSpec("age", 1.5), w, g, loaders=loaders)
    assert torch.allclose(older.w_plus - w, -1.5 * directions["interfacegan-young"].expand(3, N_LATENT, D), atol=1e-5)
    pose = apply_edit(EditSpec("pose", 0.5), w, g, loaders=loaders)  # a W+ direction, row by row
    assert torch.allclose(pose.w_plus - w, 0.5 * directions[("directions-styleganex", "pose")], atol=1e-6)
    assert (pose.images - render(g, w)).abs().mean() > 1e-4
    zero = apply_edit(EditSpec("smile", 0.0), w, g, loaders=loaders)
    assert torch.equal(zero.w_plus, w) and torch.equal(zero.images, render(g, w))


# ----------------------------------------------------------------------------- out-of-domain


def test_nada_edit_renders_the_same_codes_with_the_style_generator(inversion):
    w, g = inversion
    styled = tiny_generator(7)
    loaders = loaders_for(generators={"nada-sketch": styled}, available={"nada-sketch"})
    res = apply_edit(EditSpec("sketch"), w, g, loaders=loaders)
    assert res.kind == "nada" and res.strength == 1.0 and res.generator is styled
    assert torch.equal(res.w_plus, w)  # codes unchanged, only the generator differs
    assert torch.allclose(res.images, render(styled, w), atol=1e-6)
    half = apply_edit(EditSpec("sketch", 0.5), w, g, loaders=loaders)
    p_half = dict(half.generator.named_parameters())["convs.0.conv.weight"]
    p0, p1 = dict(g.named_parameters())["convs.0.conv.weight"], dict(styled.named_parameters())["convs.0.conv.weight"]
    assert torch.allclose(p_half, 0.5 * (p0 + p1), atol=1e-6)
    zero = apply_edit(EditSpec("sketch", 0.0), w, g, loaders=loaders)
    assert zero.generator is g and torch.equal(zero.images, render(g, w))
    assert blend_generators(g, styled, 0.0) is g and blend_generators(g, styled, 1.0) is styled


# ----------------------------------------------------------------------------- free text


def test_free_text_in_domain_moves_clip_similarity_towards_the_text(inversion):
    w, g = inversion
    clip = TinyEmbedder(seed=0)
    cfg = EditConfig(text=TextEditConfig(steps=20, lr=0.1, keyframes=3, batch_size=3, rows=("coarse", "medium")))
    res = apply_edit(EditSpec("text", target_text="a face with a beard"), w, g, config=cfg,
                     loaders=loaders_for(clip=lambda: clip))
    before, after = res.clip_similarity
    assert after > before + 0.01  # measured -0.106 -> -0.013
    assert res.kind == "text" and res.generator is g
    changed = (res.w_plus - w).abs().amax(dim=(0, 2))
    assert torch.all(changed[8:] == 0) and changed[:8].sum() > 0  # only the allowed rows
    assert torch.allclose(res.w_plus - w, res.direction.expand(3, -1, -1), atol=1e-6)  # one residual for all frames
    losses = res.extra["losses"]
    assert losses.shape == (20,) and bool(torch.isfinite(losses).all())
    with pytest.raises(TcveError, match="target text"):
        apply_edit(EditSpec("text"), w, g, config=cfg, loaders=loaders_for(clip=lambda: clip))


def test_free_text_out_of_domain_nada_finetune_moves_clip_similarity(inversion):
    w, g = inversion
    clip = TinyEmbedder(seed=0)
    cfg = EditConfig(nada=NadaTrainConfig(steps=10, lr=0.1, batch_size=2, auto_layer_k=4, auto_layer_batch=2))
    res = apply_edit(EditSpec("text style", target_text="pencil sketch", source_text="photo"), w, g, config=cfg,
                     loaders=loaders_for(clip=lambda: clip))
    # the directional loss aligns the image change with T_target - T_source: the target-vs-source margin rises
    before, after = res.clip_margin
    assert after > before + 0.03  # measured 0.036 -> 0.115
    assert res.clip_similarity[1] > res.clip_similarity[0]  # and here the similarity to the target text too
    assert res.extra["clip_direction_cos"] > 0.2
    assert float(res.extra["losses"][-3:].mean()) < float(res.extra["losses"][:3].mean())
    assert res.kind == "text-nada" and res.generator is not g and torch.equal(res.w_plus, w)
    assert all(not p.requires_grad for p in res.generator.parameters())
    # the mapping network is never trained (NADA trains synthesis layers only)
    assert all(torch.equal(a, b) for a, b in zip(g.style.parameters(), res.generator.style.parameters()))
    zero = apply_edit(dataclasses.replace(EditSpec("text style", 0.0, target_text="pencil sketch")), w, g,
                      config=dataclasses.replace(cfg, nada=dataclasses.replace(cfg.nada, steps=1)),
                      loaders=loaders_for(clip=lambda: clip))
    assert zero.generator is g and torch.equal(zero.w_plus, w)

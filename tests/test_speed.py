"""Speed plumbing of the optimisation loops (issue 12): no host reads inside steps, and the fast paths reproduce the
plain ones (fused Adam vs torch's default Adam, batched vs one-by-one stitch tuning, PTI frame orders).

Host reads are counted with ``torch.profiler`` (``tcve.steps.count_ops``): a run of 2 steps minus a run of 1 step
gives the per-step count, so set-up and the end-of-phase read of the loss history cancel out. On CUDA the same
difference must also have no stream/device synchronisation.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tcve.consistency import ConsistencyConfig, Phase1Config, Phase2Config, run_consistency, run_phase1, run_phase2
from tcve.flow import RaftFlow
from tcve.invert import PTIConfig, _frame_orders, run_pti
from tcve.losses import SpatialLPIPS
from tcve.models.stylegan2 import Generator
from tcve.steps import count_ops, make_adam
from tcve.stitch import StitchConfig, stitch_tune

DIM = 32
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")   # on a GPU the CUDA syncs are counted too


@pytest.fixture(scope="module")
def nets() -> dict:
    torch.manual_seed(0)
    g = Generator(size=64, style_dim=DIM, n_mlp=2, channel_multiplier=1, channel_max=8).eval()
    g.requires_grad_(False)
    return {
        "g": g.to(DEVICE),
        "lpips": SpatialLPIPS("alex", backbone="random").to(DEVICE),
        "raft": RaftFlow("small", weights=None, iters=1).to(DEVICE),   # real RAFT code path, 1 update to stay fast
        "w": (torch.randn(3, g.n_latent, DIM) * 0.5).to(DEVICE),
        "y": (torch.rand(3, 3, 64, 64) * 2 - 1).to(DEVICE),
    }


def _consistency_cfg(epochs: int, **kw) -> ConsistencyConfig:
    # 3 frames, 2 pairs per step: one step per epoch; flow and losses at 32 px. The fresh mapper's lr 1e-3 (lr_mul 1)
    # moves it as lr 0.1 did under StyleCLIP's lr_mul 0.01; larger steps make rounding differences grow chaotically.
    return ConsistencyConfig.in_domain(scale_factor=2, pairs_per_step=2, progress_every=10 ** 6, return_images=False,
                                       phase1=Phase1Config(epochs=epochs, lr=0.1, alpha=1.0, fresh_mapper_lr=1e-3),
                                       phase2=Phase2Config(epochs=epochs, lr=1e-2), **kw)


def _run_stage(stage: str, nets: dict, steps: int, **kw):
    g, lp, raft, w, y = nets["g"], nets["lpips"], nets["raft"], nets["w"], nets["y"]
    if stage == "pti":   # 1 frame: one step per pass
        return lambda: run_pti(g, y[:1], w[:1], lp, PTIConfig(steps=steps, progress_every=10 ** 6, **kw))
    if stage == "phase1":
        return lambda: run_phase1(g, w, y, raft, lp, _consistency_cfg(steps, **kw))
    if stage == "phase2":
        return lambda: run_phase2(g, w, y, raft, lp, _consistency_cfg(steps, **kw))
    return lambda: stitch_tune(g, w[:2], y[:2], StitchConfig(steps=steps, frames_per_step=2, **kw))   # 2 copies


def _per_step(stage: str, nets: dict, **kw):
    return (count_ops(_run_stage(stage, nets, 2, **kw)) - count_ops(_run_stage(stage, nets, 1, **kw))).per(1)


@pytest.mark.parametrize("stage", ["pti", "phase1", "phase2", "stitch"])
def test_steps_read_nothing_back_from_the_device(stage: str, nets: dict) -> None:
    per_step = _per_step(stage, nets)
    assert per_step["syncs"] == 0, per_step
    assert per_step["cuda_syncs"] == 0, per_step
    assert per_step["ops"] > 100   # the profiler saw the steps
    # torch's default Adam (the loop before issue 12) reads its step counter once per parameter per step
    old = _per_step(stage, nets, fused_adam=False)
    assert old["syncs"] >= 10, old


def test_progress_reports_are_the_only_reads(nets: dict) -> None:
    g, lp, raft, w, y = nets["g"], nets["lpips"], nets["raft"], nets["w"], nets["y"]
    every = {}
    for n in (1, 2):
        cfg = replace(_consistency_cfg(n), progress_every=1)
        every[n] = count_ops(lambda cfg=cfg: run_phase1(g, w, y, raft, lp, cfg, progress=lambda f, m: None))
    assert (every[2] - every[1]).syncs == 1   # one loss read per report


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative error ||a - b|| / ||b|| (L2 over all entries)."""
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def _close_histories(a: dict, b: dict, rtol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], dict):
            _close_histories(a[k], b[k], rtol)
        else:
            torch.testing.assert_close(torch.tensor(a[k]), torch.tensor(b[k]), rtol=rtol, atol=0.0, msg=k)


def test_fused_adam_reproduces_default_adam_in_every_stage(nets: dict) -> None:
    g, lp, raft, w, y = nets["g"], nets["lpips"], nets["raft"], nets["w"], nets["y"]
    runs = {}
    for fused in (False, True):
        cfg = replace(_consistency_cfg(2, fused_adam=fused), return_images=True)
        cons = run_consistency(g, w, y, raft, lp, cfg)
        tuned, pti_losses = run_pti(g, y, w, lp, PTIConfig(steps=3, lr=3e-3, fused_adam=fused))
        st = stitch_tune(g, w, y, StitchConfig(steps=4, lr=3e-3, frames_per_step=1, fused_adam=fused))
        runs[fused] = (cons, pti_losses, st)
    (c0, p0, s0), (c1, p1, s1) = runs[False], runs[True]
    _close_histories(c1.history, c0.history)
    assert _rel(c1.images, c0.images) < 1e-5
    assert _rel(p1, p0) < 1e-5
    _close_histories(s1.history, s0.history)
    assert _rel(s1.images, s0.images) < 1e-5
    assert c0.history["phase1"]["loss"][-1] != c0.history["phase1"]["loss"][0]   # the runs optimised something


@pytest.mark.parametrize("per_copy", [1, 2])
def test_batched_stitching_matches_one_copy_at_a_time(nets: dict, per_copy: int) -> None:
    # 5 frames, 3 copies per step: a full batch and a padded one (with 2 frames per copy: groups of 2, 2, 1)
    g = nets["g"]
    torch.manual_seed(1)
    w = (torch.randn(5, g.n_latent, DIM) * 0.5).to(DEVICE)
    crops = (torch.rand(5, 3, 64, 64) * 2 - 1).to(DEVICE)
    # official lr 3e-4, content weight 0.01; 3 steps: later steps on this toy show a one-off 4e-5 jump (5 steps,
    # 1 copy per frame), which the first steps do not
    cfg = StitchConfig(steps=3, frames_per_copy=per_copy)
    one = stitch_tune(g, w, crops, replace(cfg, frames_per_step=1))
    many = stitch_tune(g, w, crops, replace(cfg, frames_per_step=3))
    assert _rel(many.images, one.images) < 1e-5
    for k in ("border_first", "border_last"):
        torch.testing.assert_close(torch.tensor(many.history[k]), torch.tensor(one.history[k]), rtol=1e-5, atol=0.0)
    # the content term is the distance to the edit, which starts at 0: its error is relative to the whole loss
    scale = max(one.history["border_first"])
    torch.testing.assert_close(torch.tensor(many.history["content_last"]), torch.tensor(one.history["content_last"]),
                               rtol=1e-5, atol=1e-5 * scale)
    assert len(one.history["border_last"]) == -(-5 // per_copy)
    # the tuning did move the images (the comparison is not between two copies of the input)
    with torch.no_grad():
        assert _rel(one.images, g.synthesis(w)) > 1e-4


def test_pti_frame_orders_are_the_per_pass_orders() -> None:
    assert _frame_orders(4, 2, shuffle=False, seed=0).tolist() == [[0, 1, 2, 3], [0, 1, 2, 3]]
    rng = torch.Generator().manual_seed(7)
    expected = [torch.randperm(5, generator=rng).tolist() for _ in range(3)]
    assert _frame_orders(5, 3, shuffle=True, seed=7).tolist() == expected


def test_make_adam_picks_a_host_free_implementation() -> None:
    p = torch.nn.Parameter(torch.zeros(3))
    assert make_adam([p], 1e-3).defaults["fused"] is True
    assert not make_adam([p], 1e-3, fused=False).defaults["fused"]

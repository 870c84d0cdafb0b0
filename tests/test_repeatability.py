"""Two identical runs give identical videos (seeded runs, seeded random weights, deterministic algorithms)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tcve.edit import EditSpec
from tcve.pipeline import repeatable
from tcve.service import Service
from tcve.video import read_video, write_video

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.mp4"
# PTI only: its LPIPS loss runs on the offline random backbone, whose weights were unseeded on main
LIGHT = {"pti_steps": 1, "phase1_epochs": 0, "phase2_epochs": 0, "stitch_steps": 0}


def test_repeatable_seeds_the_block_and_restores_the_caller():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    with repeatable(7, torch.device("cpu")):
        a = torch.rand(3)
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's stream is untouched
    assert not torch.are_deterministic_algorithms_enabled()
    with repeatable(7, torch.device("cpu")):
        assert torch.equal(torch.rand(3), a)


@pytest.mark.slow
def test_two_identical_runs_give_identical_videos(tmp_path):
    frames, info = read_video(EXAMPLE, limits=None)
    clip = write_video(tmp_path / "clip.mp4", frames[:3], info.fps)
    videos = []
    for i in range(2):  # fresh services: new networks, and the global RNG has moved on in between
        torch.rand(i + 1)
        service = Service("tiny", device="cpu", workdir=tmp_path / f"runs{i}")
        config = service.config_for("Preview", EditSpec("angry"), LIGHT)
        result = service.run(clip, EditSpec("angry"), "Preview", config=config)
        videos.append([read_video(p, limits=None)[0] for p in (result.output, result.direct)])
    for first, second in zip(*videos):
        assert np.array_equal(first, second)  # on main: up to 23 levels apart

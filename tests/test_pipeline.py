"""End to end with tiny random networks: the run keeps the clip's fps, frame count and audio, reports metrics."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from tcve.consistency import ConsistencyConfig, Phase1Config, Phase2Config
from tcve.edit import EditSpec
from tcve.errors import Cancelled, NoFaceFound
from tcve.invert import InversionConfig, PTIConfig
from tcve.pipeline import PipelineConfig
from tcve.service import Service
from tcve.stitch import StitchConfig
from tcve.video import probe, write_video

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.mp4"
LIGHT = PipelineConfig(
    inversion=InversionConfig(pti=PTIConfig(steps=1, batch_size=4)),
    stitch=StitchConfig(steps=2),
    consistency=ConsistencyConfig.in_domain(scale_factor=1, phase1=Phase1Config(epochs=1),
                                            phase2=Phase2Config(epochs=1), pairs_per_step=4),
)


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Service:
    return Service("tiny", device="cpu", workdir=tmp_path_factory.mktemp("runs"))


def _audio_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return float(stream.duration * stream.time_base)


@pytest.mark.slow
def test_edit_keeps_fps_frames_and_audio(service):
    stages = []
    result = service.run(EXAMPLE, EditSpec("angry"), max_frames=5, config=LIGHT,
                         progress=lambda fraction, message: stages.append((fraction, message)))
    source = probe(EXAMPLE, limits=None)
    for path in (result.output, result.direct, result.side_by_side):
        info = probe(path, limits=None)
        assert info.fps == source.fps
        assert info.n_frames == 5
        assert info.has_audio
        assert abs(_audio_seconds(path) - 5 / float(source.fps)) < 0.05
    edited = probe(result.output, limits=None)
    assert (edited.width, edited.height) == (source.width, source.height)
    side = probe(result.side_by_side, limits=None)
    assert side.width > 2 * side.height  # three panels
    for key in ("warping_error_direct", "warping_error_consistent", "warping_error_smoothing",
                "lpips_to_direct_consistent"):
        assert np.isfinite(result.metrics[key]) and result.metrics[key] >= 0
    assert len(result.curves["direct"]) == 4  # one value per consecutive pair
    assert result.xt["consistent"].shape[0] == 5
    fractions = [f for f, _ in stages]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert {m.split(":")[0] for _, m in stages} >= {"read", "align", "invert", "edit", "consistency", "write"}
    saved = json.loads((result.output.parent / "metrics.json").read_text())
    assert saved["frames"] == 5 and saved["metrics"]["warping_error_direct"] == result.metrics["warping_error_direct"]
    # The same clip and settings again: served from the result cache, nothing recomputed.
    again = service.run(EXAMPLE, EditSpec("angry"), max_frames=5, config=LIGHT)
    assert again.cached and not result.cached  # labelled as cached (the app says so) ...
    assert again.output == result.output and again.seconds == result.seconds  # ... the same files and stage times


def test_cancel_stops_the_run_and_leaves_no_video(service, tmp_path):
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Cancelled):
        service.run(EXAMPLE, EditSpec("smile"), max_frames=3, config=LIGHT, cancel=cancel)
    assert not list(service.workdir.rglob("*.mp4.tmp*"))


def test_a_clip_without_a_face_is_a_clear_error(service, tmp_path):
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (96, 96, 3), dtype=np.uint8) for _ in range(4)]
    clip = write_video(tmp_path / "noise.mp4", frames, 10)
    with pytest.raises(NoFaceFound):
        service.run(clip, EditSpec("smile"), config=LIGHT)

"""A face that leaves the frame or appears late: no ghost faces, the user is told which frames were kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tcve.align import AlignConfig, compute_transforms, track_faces, visible_runs
from tcve.edit import EditSpec
from tcve.invert import InversionConfig
from tcve.landmarks import Face
from tcve.pipeline import PipelineConfig, fade_weights
from tcve.service import Service
from tcve.video import read_video, write_video

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.mp4"
# What is pasted where is the point here: encoder codes and the direct edit only (no PTI, consistency, stitching).
PASTE_ONLY = PipelineConfig(inversion=InversionConfig(pti=None), run_consistency=False, stitch=None, smoothing=None)


def _face(points: np.ndarray) -> Face:
    return Face(points, (points[:, 0].min(), points[:, 1].min(), points[:, 0].max(), points[:, 1].max()))


MAIN = np.array([[100.0, 100], [140, 100], [104, 140], [136, 140]])


def test_short_misses_are_filled_and_long_ones_mark_the_face_gone():
    # frames 2 (one miss: filled) and 5-9 (five misses, more than lost_after=3: gone); the face comes back elsewhere
    dets = [[_face(MAIN + [2.0 * t, 0])] for t in range(5)] + [[] for _ in range(5)] + [[_face(MAIN + [150, 50])]] * 3
    dets[2] = []
    track = track_faces(dets, (300, 400), lost_after=3)
    assert track.visible_mask.tolist() == [True] * 5 + [False] * 5 + [True] * 3
    assert visible_runs(track.visible_mask, value=False) == [(5, 10)]
    np.testing.assert_allclose(track.points[2], MAIN + [4.0, 0])  # the short miss is interpolated
    np.testing.assert_allclose(track.points[10], MAIN + [150, 50])  # re-acquired far from where it left
    assert any("1 of 13 frames" in m for m in track.messages)  # only the filled frame counts as filled
    # smoothing stays within each visible run: the quads before the gap do not drift towards the new position
    transforms = compute_transforms(track, AlignConfig(output_size=64))
    smooth_alone = compute_transforms(track_faces(dets[:5], (300, 400), lost_after=3), AlignConfig(output_size=64))
    for a, b in zip(transforms[:5], smooth_alone):
        np.testing.assert_allclose(a.quad, b.quad, atol=1e-9)


def test_a_clip_that_opens_without_a_face_marks_those_frames_gone():
    dets = [[] for _ in range(6)] + [[_face(MAIN)] for _ in range(4)]
    track = track_faces(dets, (300, 400), lost_after=3)
    assert track.visible_mask.tolist() == [False] * 6 + [True] * 4
    short = track_faces([[]] * 2 + [[_face(MAIN)]] * 3, (300, 400), lost_after=3)
    assert short.visible_mask.all()  # two missed frames at the start: held from the first detection, as before


def test_low_confidence_detections_count_as_misses():
    dets = [[Face(MAIN, (0, 0, 1, 1), 0.9)]] * 3 + [[Face(MAIN, (0, 0, 1, 1), 0.2)]] * 5
    track = track_faces(dets, (300, 400), lost_after=3, min_score=0.5)
    assert track.visible_mask.tolist() == [True] * 3 + [False] * 5


def test_fade_weights_ramp_next_to_gaps_only():
    visible = np.array([1, 1, 1, 1, 0, 0, 1, 1, 1, 1], bool)
    np.testing.assert_allclose(fade_weights(visible, 2), [1, 1, 2 / 3, 1 / 3, 0, 0, 1 / 3, 2 / 3, 1, 1])
    np.testing.assert_allclose(fade_weights(np.ones(4, bool), 2), 1.0)


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Service:
    return Service("tiny", device="cpu", workdir=tmp_path_factory.mktemp("runs"))


def _clip(tmp_path: Path, pattern: str) -> Path:
    """Frames of the example clip where pattern has 'F', flat grey (no face) where it has '.'."""
    frames, info = read_video(EXAMPLE, limits=None)
    grey = np.full_like(frames[0], 128)
    out = [frames[i] if c == "F" else grey for i, c in enumerate(pattern)]
    return write_video(tmp_path / f"{pattern.replace('.', '_')}.mp4", out, info.fps)


@pytest.mark.slow
def test_frames_without_the_face_pass_through_unedited(service, tmp_path):
    clip = _clip(tmp_path, "FFF....FFF")
    result = service.run(clip, EditSpec("angry"), preset="Paper settings", config=PASTE_ONLY)
    source, _ = read_video(clip, limits=None)
    edited, _ = read_video(result.output, limits=None)
    direct, _ = read_video(result.direct, limits=None)
    assert edited.shape == source.shape
    for video in (edited, direct):
        gone = np.abs(video[3:7].astype(int) - source[3:7]).mean()
        assert gone < 1.0  # no ghost face pasted onto the empty frames (on main: an edited face, ~20 levels off)
        face = np.abs(video[[0, 9]].astype(int) - source[[0, 9]]).mean()
        assert face > 2 * max(gone, 0.1)  # the face frames are edited
    assert any("Face not visible in frames 4–7" in m and "kept as they are" in m for m in result.messages)
    assert result.info.n_frames == 10 and result.metrics["warping_error_direct"] >= 0
    # the edited face fades in next to the gap: frame 8 (weight 1/3) is closer to the input than frame 10 (weight 1)
    assert np.abs(direct[7].astype(int) - source[7]).mean() < np.abs(direct[9].astype(int) - source[9]).mean()


def test_preview_finds_the_first_frame_with_a_face(service, tmp_path):
    clip = _clip(tmp_path, "...FF")
    face = service.preview_face(clip)  # on main: NoFaceFound (only frame 0 was looked at)
    size = int(service.models().generator.size)
    assert face.shape == (size, size, 3) and face.std() > 5  # a real crop, not the grey frame

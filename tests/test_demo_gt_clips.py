"""Ground-truth edit pairs of the demo domain: deterministic, moving, and each edit confined to its face part."""

from __future__ import annotations

import numpy as np
import pytest

from tcve.demo.gt_clips import ATTRIBUTE_EDITS, GT_EDITS, ClipSpec, make_clip, make_pair

SPEC = ClipSpec(seed=3, n_frames=12)


@pytest.fixture(scope="module")
def clip():
    return make_clip(SPEC)


def _changed_positions(frame: np.ndarray, edited: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Changed pixels in eye-distance units: signed distance below the eye line, distance from the eyes' midpoint."""
    ys, xs = np.nonzero(np.abs(frame.astype(int) - edited).max(-1) > 0)
    eye_l, eye_r = landmarks[0], landmarks[1]
    d = float(np.linalg.norm(eye_r - eye_l))
    down = np.array([-(eye_r - eye_l)[1], (eye_r - eye_l)[0]]) / d
    rel = np.stack([xs, ys], 1) - (eye_l + eye_r) / 2
    return rel @ down / d, np.linalg.norm(rel, axis=1) / d


def test_clip_is_deterministic_and_shaped(clip):
    again = make_clip(SPEC)
    assert np.array_equal(clip.frames, again.frames) and np.array_equal(clip.landmarks, again.landmarks)
    assert clip.frames.shape == (12, 160, 160, 3) and clip.frames.dtype == np.uint8
    assert clip.landmarks.shape == (12, 4, 2) and len(clip.attributes) == 12
    assert not np.array_equal(clip.frames, make_clip(ClipSpec(seed=4, n_frames=12)).frames)
    with pytest.raises(ValueError, match="2 frames"):
        make_clip(ClipSpec(seed=0, n_frames=1))


@pytest.mark.parametrize("spec", [SPEC, ClipSpec(seed=0, n_frames=10, fps=6.0)], ids=["10fps", "6fps"])
def test_clip_has_real_motion(spec):
    clip = make_clip(spec)
    # every frame differs visibly from the next (mean absolute change over the whole frame, 0-255 scale)
    step = np.abs(np.diff(clip.frames.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))
    assert step.min() > 0.4, step
    values = {k: np.array([getattr(a, k) for a in clip.attributes]) for k in ("yaw", "mouth_open", "blink", "smile")}
    assert np.ptp(values["yaw"]) > 0.3  # a head turn
    assert np.ptp(values["mouth_open"]) > 0.4  # talking
    assert values["blink"].max() > 0.6  # a blink inside the clip
    assert np.ptp(values["smile"]) > 0.3  # an expression change
    # the face moves in the frame: the eye landmarks travel several pixels
    assert np.ptp(clip.landmarks[:, 0, 0]) > 3.0
    assert (np.array([a.mouth_open for a in clip.attributes]) > 0.3).mean() > 0.2  # open in several frames


def test_source_lacks_what_the_edits_add(clip):
    assert not any(a.eyeglasses for a in clip.attributes)
    assert max(a.age for a in clip.attributes) < 0.35


# Where each edit may change pixels, in eye-distance units: (lowest signed distance below the eye line, highest,
# largest distance from the eyes' midpoint). Everything else must be bit-identical.
REGIONS = {
    "eyeglasses": (-0.45, 0.45, 2.0),  # the rims and temples around the eye line
    "angry": (-1.0, 0.4, 1.4),  # brows (and the eyes they narrow), nothing at the mouth
    "surprised": (-1.0, 0.4, 1.4),
    "smile": (-0.4, 2.0, 1.6),  # mouth, folds, narrowed eyes; nothing above the eyes
    "age": (-3.0, 3.0, 3.2),  # hair, wrinkles, lids: the head, never the frame's corners
}


@pytest.mark.parametrize("edit", list(ATTRIBUTE_EDITS))
def test_edit_changes_only_its_region(clip, edit):
    pair = make_pair(clip, edit)
    assert pair.domain == "in" and pair.edited_frames.shape == clip.frames.shape
    low, high, radius = REGIONS[edit]
    changed_share = []
    for frame, edited, landmarks in zip(clip.frames, pair.edited_frames, clip.landmarks):
        below, dist = _changed_positions(frame, edited, landmarks)
        assert below.size > 0, "the edit must show in every frame"
        assert below.min() >= low and below.max() <= high and dist.max() <= radius, (edit, below.min(),
                                                                                      below.max(), dist.max())
        changed_share.append(below.size / frame[..., 0].size)
    assert 0.005 < np.mean(changed_share) < 0.25
    # frame corners (backdrop) are identical, and the identity is the same person's
    assert np.array_equal(pair.edited_frames[:, :12, :12], clip.frames[:, :12, :12])
    assert all(e.skin_tone == a.skin_tone and e.hair_style == a.hair_style
               for e, a in zip(pair.edited_attributes, clip.attributes))


def test_edit_keeps_the_motion(clip):
    pair = make_pair(clip, "eyeglasses")
    for name in ("yaw", "mouth_open", "blink", "smile", "brows"):
        assert [getattr(a, name) for a in pair.edited_attributes] == [getattr(a, name) for a in clip.attributes]
    pair = make_pair(clip, "angry")
    brows = np.array([a.brows for a in pair.edited_attributes])
    assert brows.max() < -0.5  # angry in every frame (the classifier's 'angry' band ends at -0.5)
    assert np.ptp(brows) > 0  # still moving where not clipped


def test_style_truth_is_the_sketch_filter(clip):
    pair = make_pair(clip, "sketch")
    assert pair.domain == "out" and pair.edited_frames is None
    crop = clip.frames[0, 48:112, 48:112]
    styled = pair.crop_style(crop)
    assert styled.shape == crop.shape and styled.dtype == np.uint8
    assert np.abs(styled.astype(int) - crop).mean() > 10  # a different look
    assert np.array_equal(styled, pair.crop_style(crop))


def test_unknown_edit_is_refused(clip):
    assert set(GT_EDITS) == {"eyeglasses", "angry", "surprised", "smile", "age", "sketch"}
    with pytest.raises(KeyError, match="no ground truth"):
        make_pair(clip, "beard")

"""tcve.align: FFHQ quad parity, tracking, smoothing (jitter), crop geometry, and seamless paste-back round trips."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from tcve.align import (AlignConfig, AlignTransform, compute_transforms, crop_face, detect_and_track, feather_mask,
                        paste_face, paste_mask, psnr, quad_axes, quad_from_axes, quad_jitter, raw_transforms,
                        stack_quads, track_faces)
from tcve.errors import NoFaceFound
from tcve.landmarks import Face, MediaPipeDetector
from tcve.video import ReadOptions, iter_frames

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.mp4"
# Four FFHQ points of the astronaut photo (MediaPipe, 512x512), as measured by test_landmarks
ASTRONAUT_POINTS = np.array([[204.3, 102.2], [247.4, 104.4], [201.3, 139.0], [245.4, 141.7]])


def _ffhq_script_quad(lm_eye_left, lm_eye_right, mouth_left, mouth_right):
    """Literal transcription of the FFHQ dataset script's quad arithmetic (np.flipud etc.), as the reference."""
    eye_avg = (lm_eye_left + lm_eye_right) * 0.5
    eye_to_eye = lm_eye_right - lm_eye_left
    mouth_avg = (mouth_left + mouth_right) * 0.5
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def _face(points, score=1.0) -> Face:
    p = np.asarray(points, float)
    return Face(p, (p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()), score)


def test_quad_matches_the_ffhq_script():
    pts = np.array([[40.0, 50], [60, 50], [42, 70], [58, 70]])
    np.testing.assert_allclose(quad_from_axes(*quad_axes(pts)), [[10, 12], [10, 92], [90, 92], [90, 12]])
    rng = np.random.default_rng(0)
    batch = ASTRONAUT_POINTS + rng.normal(0, 6, (20, 4, 2))
    ours = quad_from_axes(*quad_axes(batch))
    for p, q in zip(batch, ours):
        np.testing.assert_allclose(q, _ffhq_script_quad(*p), atol=1e-9)


def test_transform_maps_crop_edges_onto_the_quad():
    q = quad_from_axes(*quad_axes(ASTRONAUT_POINTS))
    t = AlignTransform(q, 256, (512, 512))
    s = 256
    edges = np.array([[-0.5, -0.5], [-0.5, s - 0.5], [s - 0.5, s - 0.5], [s - 0.5, -0.5]])  # crop corners (edges)
    np.testing.assert_allclose(t.crop_points_to_frame(edges), q, atol=1e-9)
    np.testing.assert_allclose(t.frame_points_to_crop(q), edges, atol=1e-9)
    assert t.qsize == pytest.approx(np.linalg.norm(q[3] - q[0]))


def test_crop_samples_the_right_pixels():
    # bilinear sampling is exact on a linear ramp, so every crop pixel must hold the ramp at its mapped position
    h, w = 300, 400
    yy, xx = np.mgrid[0:h, 0:w]
    ramp = np.stack([xx * 0.5, yy * 0.6, (xx + yy) * 0.3], -1).astype(np.uint8)  # 0..239, no wrap
    c, x = np.array([200.0, 150.0]), np.array([60.0, 25.0])  # rotated quad, inside the frame
    t = AlignTransform(quad_from_axes(c, x), 64, (h, w))
    crop = crop_face(ramp, t, AlignConfig(output_size=64))
    uv = np.stack(np.meshgrid(np.arange(64), np.arange(64)), -1).reshape(-1, 2).astype(float)
    xy = t.crop_points_to_frame(uv)
    ref = np.stack([xy[:, 0] * 0.5, xy[:, 1] * 0.6, (xy[:, 0] + xy[:, 1]) * 0.3], -1).reshape(64, 64, 3)
    # the uint8 ramp floors the continuous values, so allow one level plus the floor step
    assert np.abs(crop.astype(float) - ref).max() < 1.6


def test_tracking_keeps_the_main_face_and_fills_misses():
    main = np.array([[100.0, 100], [140, 100], [104, 140], [136, 140]])
    small = np.array([[10.0, 10], [20, 10], [11, 20], [19, 20]])
    dets = []
    for t in range(10):
        p = main + [3.0 * t, 0]
        if t in (3, 4):
            dets.append([_face(small)])  # main face missed; the other person must not take over
        elif t == 7:
            dets.append([])
        else:
            dets.append([_face(small), _face(p)])
    track = track_faces(dets, (240, 320))
    assert track.detected.tolist() == [t not in (3, 4, 7) for t in range(10)]
    np.testing.assert_allclose(track.points, [main + [3.0 * t, 0] for t in range(10)], atol=1e-9)  # linear fill
    assert track.max_faces == 2 and any("2 faces" in m for m in track.messages)
    assert any("3 of 10 frames" in m for m in track.messages)
    with pytest.raises(NoFaceFound, match="No face"):
        track_faces([[], [], []], (240, 320))


def test_detection_on_downscaled_frames_maps_back():
    seen = []

    def fake_detector(frame):
        seen.append(frame.shape)
        s = frame.shape[1] / 2000  # the face sits at the same relative place at any size
        return [_face((ASTRONAUT_POINTS + 0.5) * s * 4 - 0.5)]

    track = detect_and_track([np.zeros((1000, 2000, 3), np.uint8)], fake_detector, AlignConfig(detect_max_side=500))
    assert seen == [(250, 500, 3)]
    np.testing.assert_allclose(track.points[0], (ASTRONAUT_POINTS + 0.5) * 4 - 0.5, atol=1e-9)


def _smooth_path(n: int = 75):
    """Per-frame 2x3 affines: the photo panned, zoomed and rotated along a smooth path (as in examples/)."""
    t = np.arange(n) / (n - 1)
    mats = []
    for ti in t:
        m = cv2.getRotationMatrix2D((225.0, 125.0), 6.0 * np.sin(2 * np.pi * ti), 1.05 + 0.12 * ti)
        m[:, 2] += [30 * np.sin(2 * np.pi * ti), 20 * np.sin(np.pi * ti)]
        mats.append(m)
    return np.stack(mats)


def test_smoothing_removes_detector_jitter():
    mats = _smooth_path()
    truth = np.einsum("tij,kj->tki", mats[:, :, :2], ASTRONAUT_POINTS) + mats[:, None, :, 2]  # [T,4,2]
    noisy = truth + np.random.default_rng(0).normal(0, 1.0, truth.shape)  # ~1 px landmark noise per frame
    track = track_faces([[_face(p)] for p in noisy], (512, 512))
    cfg = AlignConfig(output_size=256)
    raw = stack_quads(raw_transforms(track, cfg))
    smooth = stack_quads(compute_transforms(track, cfg))
    true_quads = quad_from_axes(*quad_axes(truth))
    j_true, j_raw, j_smooth = quad_jitter(true_quads), quad_jitter(raw), quad_jitter(smooth)
    assert j_raw > 10 * j_true  # the noise dominates the raw crops' frame-to-frame motion
    assert j_smooth < 0.25 * j_raw  # STIT-style smoothing: at least 4x less jitter
    # and without dragging the crop off the face: closer to the true quads than the raw detections are
    assert np.abs(smooth - true_quads).mean() < np.abs(raw - true_quads).mean()


@pytest.fixture(scope="module")
def clip_and_track():
    opts = ReadOptions(stride=3)  # 25 frames of the example keep the test quick
    frames = np.stack(list(iter_frames(EXAMPLE, opts)))
    det = MediaPipeDetector()
    track = detect_and_track(frames, det)
    det.close()
    return frames, track


def test_real_clip_crops_are_stable(clip_and_track):
    frames, track = clip_and_track
    assert track.detected.all() and track.max_faces == 1 and track.points.shape == (len(frames), 4, 2)
    cfg = AlignConfig(output_size=256)
    smooth, raw = compute_transforms(track, cfg), raw_transforms(track, cfg)
    # the eyes must stay put inside the aligned crops: their position spread across frames is tiny
    eyes = np.stack([t.frame_points_to_crop(p[:2]) for t, p in zip(smooth, track.points)])
    assert eyes.std(axis=0).max() < 0.01 * 256
    assert quad_jitter(stack_quads(smooth)) < quad_jitter(stack_quads(raw))


@pytest.mark.parametrize("size", [256, 1024])
def test_round_trip_is_lossless_outside_and_close_inside(clip_and_track, size):
    frames, track = clip_and_track
    cfg = AlignConfig(output_size=size)
    transforms = compute_transforms(track, cfg)
    for i in (0, len(frames) // 2, len(frames) - 1):
        frame, t = frames[i], transforms[i]
        crop = crop_face(frame, t, cfg)
        assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
        out = paste_face(frame, crop, t, config=cfg)
        region = paste_mask(t, cfg) > 0
        assert 0.1 < region.mean() < 0.9
        assert np.array_equal(out[~region], frame[~region])  # exactly unchanged outside the face region
        assert psnr(out, frame, region) > 40.0
        # no shift: phase correlation between input and output face regions
        gi, go = (cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float64) for a in (frame, out))
        (dx, dy), _ = cv2.phaseCorrelate(gi, go)
        assert abs(dx) < 0.05 and abs(dy) < 0.05


def test_paste_has_no_seam_and_respects_a_face_mask():
    frame = np.full((200, 240, 3), 30, np.uint8)
    t = AlignTransform(quad_from_axes(np.array([120.0, 100]), np.array([50.0, 8.0])), 128, (200, 240))
    edited = np.full((128, 128, 3), 230, np.uint8)
    out = paste_face(frame, edited, t)
    assert out.max() >= 229  # the centre is the edited crop
    step = max(np.abs(np.diff(out.astype(int), axis=0)).max(), np.abs(np.diff(out.astype(int), axis=1)).max())
    assert step < 30  # a hard paste would jump by 200 levels at the quad's edge
    alpha = feather_mask(128)
    assert alpha[0].max() == 0 and alpha[:, 0].max() == 0 and alpha[64, 64] == 1.0
    # face mask: nothing from the crop's top half
    mask = np.zeros((128, 128), np.float32)
    mask[80:] = 1
    out_m = paste_face(frame, edited, t, mask=mask)
    top = t.crop_points_to_frame(np.array([[64.0, 20.0]]))[0].round().astype(int)
    low = t.crop_points_to_frame(np.array([[64.0, 110.0]]))[0].round().astype(int)
    assert out_m[top[1], top[0]].tolist() == [30, 30, 30] and out_m[low[1], low[0], 0] > 150


def test_face_at_the_frame_border_is_padded_and_round_trips():
    photo = data.astronaut()
    frame = np.ascontiguousarray(photo[80:330, 185:445])  # face close to the top-left corner
    pts = ASTRONAUT_POINTS - [185, 80]
    cfg = AlignConfig(output_size=256)
    t = compute_transforms(track_faces([[_face(pts)]], frame.shape[:2]), cfg)[0]
    assert t.quad.min() < -20  # the FFHQ quad leaves the frame
    crop = crop_face(frame, t, cfg)
    # outside the frame the padding is blurred (FFHQ script), so it is much smoother than the mirrored detail
    uv = np.stack(np.meshgrid(np.arange(256), np.arange(256)), -1).reshape(-1, 2).astype(float)
    xy = t.crop_points_to_frame(uv).reshape(256, 256, 2)
    far_out = (xy < -8).any(-1)[:, :-1]
    near_in = ((xy > 8) & (xy < 60)).all(-1)[:, :-1]
    grad = np.abs(np.diff(crop.astype(float), axis=1)).mean(-1)
    assert far_out.mean() > 0.05 and grad[far_out].mean() < 0.5 * grad[near_in].mean()
    out = paste_face(frame, crop, t, config=cfg)
    region = paste_mask(t, cfg) > 0
    assert np.array_equal(out[~region], frame[~region]) and psnr(out, frame, region) > 40.0


def test_poisson_blend_removes_a_colour_offset_without_shifting(clip_and_track):
    frames, track = clip_and_track
    frame = frames[0]
    feather, poisson = AlignConfig(output_size=256), AlignConfig(output_size=256, blend="poisson")
    t = compute_transforms(track, feather)[0]
    crop = crop_face(frame, t, feather)
    region = paste_mask(t, feather) > 0
    same = paste_face(frame, crop, t, config=poisson)
    assert np.array_equal(same[~region], frame[~region]) and psnr(same, frame, region) > 35.0
    (dx, dy), _ = cv2.phaseCorrelate(*(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float64) for a in (frame, same)))
    assert abs(dx) < 0.1 and abs(dy) < 0.1
    brighter = np.clip(crop.astype(int) + 40, 0, 255).astype(np.uint8)  # an edit that also shifted the colour
    err_feather = np.abs(paste_face(frame, brighter, t, config=feather).astype(float) - frame)[region].mean()
    err_poisson = np.abs(paste_face(frame, brighter, t, config=poisson).astype(float) - frame)[region].mean()
    assert err_poisson < 0.3 * err_feather  # the gradient-domain blend takes the offset out


def test_domain_framing_scales_and_lowers_the_quad():
    pts = np.array([[40.0, 50], [60, 50], [42, 70], [58, 70]])   # FFHQ quad: centre (50, 52), half-side 40
    track = track_faces([[_face(pts)]], (128, 128))
    ffhq = stack_quads(raw_transforms(track, AlignConfig(output_size=64)))[0]
    framed = stack_quads(raw_transforms(track, AlignConfig(output_size=64, quad_scale=1.5, quad_shift=0.25)))[0]
    np.testing.assert_allclose(ffhq, [[10, 12], [10, 92], [90, 92], [90, 12]])
    # centre moved down by 0.25 half-sides (10 px), half-side 1.5 x 40 = 60
    np.testing.assert_allclose(framed, [[-10, 2], [-10, 122], [110, 122], [110, 2]])
    smoothed = stack_quads(compute_transforms(track, AlignConfig(output_size=64, quad_scale=1.5, quad_shift=0.25)))
    np.testing.assert_allclose(smoothed[0], framed, atol=1e-9)

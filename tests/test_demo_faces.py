"""The demo face domain: renderer, talking-head clips, ground-truth landmarks and the shipped attribute classifier."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tcve.demo.faces import (CONTINUOUS, IDENTITY, FaceAttributes, animate_clip, attribute_range, landmarks_for,
                             render_face, sample_attributes)

pytestmark = pytest.mark.usefixtures("one_thread")


def _mean_abs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(-1)


@pytest.mark.parametrize("size", [64, 128, 256])
def test_render_shape_and_determinism(size: int) -> None:
    attrs = sample_attributes(np.random.default_rng(3))
    frame = render_face(attrs, size)
    assert frame.shape == (size, size, 3) and frame.dtype == np.uint8
    assert np.array_equal(frame, render_face(attrs, size))
    grainy = render_face(attrs, size, np.random.default_rng(0))
    assert 0.5 < _mean_abs(grainy, frame).mean() < 3.0  # the optional grain is faint
    assert frame.std() > 20  # not a flat image


def test_render_rejects_unsupported_size() -> None:
    with pytest.raises(ValueError, match="size"):
        render_face(FaceAttributes(), 100)


def test_sampled_attributes_stay_in_range_and_vary() -> None:
    rng = np.random.default_rng(0)
    samples = [sample_attributes(rng) for _ in range(300)]
    for name in CONTINUOUS:
        lo, hi = attribute_range(name)
        values = np.array([getattr(s, name) for s in samples])
        assert values.min() >= lo and values.max() <= hi, name
        assert values.std() > 0.1 * (hi - lo), name
    for flag in ("eyeglasses", "beard"):
        share = np.mean([getattr(s, flag) for s in samples])
        assert 0.15 < share < 0.6, flag
    assert FaceAttributes(mouth_open=3.0, yaw=-9.0).clipped() == FaceAttributes(mouth_open=1.0, yaw=-0.5)


def _region_share(diff: np.ndarray, center: np.ndarray, radius: float) -> float:
    """Fraction of the total pixel change that lies within `radius` of `center` (x, y)."""
    yy, xx = np.mgrid[0:diff.shape[0], 0:diff.shape[1]]
    near = (xx - center[0]) ** 2 + (yy - center[1]) ** 2 <= radius ** 2
    return float(diff[near].sum() / max(diff.sum(), 1e-6))


def test_attributes_change_their_own_region() -> None:
    size = 128
    base = FaceAttributes(yaw=0.2, roll=0.1, smile=0.0, mouth_open=0.0, eyeglasses=False, beard=False)
    pts = landmarks_for(base, size)
    eyes, mouth = pts[:2].mean(0), pts[2:].mean(0)
    eye_dist = np.linalg.norm(pts[1] - pts[0])
    frame = render_face(base, size)
    # eyeglasses: the change is around the eyes; mouth opening: around the mouth; blink: at the eyes only
    glasses = _mean_abs(render_face(base.replace(eyeglasses=True), size), frame)
    assert _region_share(glasses, eyes, 1.1 * eye_dist) > 0.9
    opened = _mean_abs(render_face(base.replace(mouth_open=1.0), size), frame)
    assert _region_share(opened, mouth, 0.6 * eye_dist) > 0.9
    blinked = _mean_abs(render_face(base.replace(blink=1.0), size), frame)
    assert _region_share(blinked, pts[0], 0.35 * eye_dist) + _region_share(blinked, pts[1], 0.35 * eye_dist) > 0.9
    beard = _mean_abs(render_face(base.replace(beard=True), size), frame)
    assert _region_share(beard, mouth, 1.3 * eye_dist) > 0.8 and beard.mean() > 5


def test_landmarks_follow_pose_and_sit_on_the_eyes() -> None:
    size = 128
    a = FaceAttributes(yaw=0.0, roll=0.0, center_x=0.0)
    pts = landmarks_for(a, size)
    assert pts.shape == (4, 2)
    assert pts[0, 0] < size / 2 < pts[1, 0] and pts[2, 0] < size / 2 < pts[3, 0]  # left/right as seen
    assert pts[:2, 1].max() < pts[2:, 1].min()  # eyes above the mouth
    frame = render_face(a.replace(gaze_x=0.0), size).astype(np.float32).mean(-1)
    skin = frame[int(pts[0, 1]) + 14, int(pts[0, 0])]  # cheek below the eye
    for x, y in pts[:2]:
        assert frame[int(round(y)), int(round(x))] < 0.5 * skin  # the pupil is dark
    moved = landmarks_for(a.replace(center_x=0.05), size)
    assert np.allclose(moved - pts, [0.05 * size, 0.0], atol=1e-6)
    rolled = landmarks_for(a.replace(roll=0.2), size)
    tilt = np.arctan2(*(rolled[1] - rolled[0])[::-1])
    assert abs(tilt - 0.2) < 0.02


def test_animated_clip_is_smooth_and_keeps_identity() -> None:
    frames, attrs = animate_clip(50, fps=25, size=64, rng=np.random.default_rng(1))
    assert frames.shape == (50, 64, 64, 3) and frames.dtype == np.uint8 and len(attrs) == 50
    for name in IDENTITY:
        assert len({getattr(a, name) for a in attrs}) == 1, name
    mouth = np.array([a.mouth_open for a in attrs])
    yaw = np.array([a.yaw for a in attrs])
    assert mouth.std() > 0.1  # it talks
    assert np.abs(np.diff(yaw)).max() < 0.05  # head motion is smooth at 25 fps
    # consecutive frames are much closer than frames of two different people
    step = _mean_abs(frames[1:], frames[:-1]).mean()
    other = render_face(sample_attributes(np.random.default_rng(99)), 64)
    assert step < 0.3 * _mean_abs(frames[0], other).mean()
    fields = {f.name for f in dataclasses.fields(FaceAttributes)}
    assert set(IDENTITY) <= fields


def test_shipped_classifier_recognises_fresh_renders() -> None:
    from tcve.demo.classifier import HEADS, IGNORE, accuracy, frames_to_image, labels_for, load_classifier

    model = load_classifier()
    assert sum(p.numel() for p in model.parameters()) * 4 < 1_000_000  # ships under 1 MB
    rng = np.random.default_rng(12345)  # never used in training (train/val seeds are 0 and 1000)
    attrs = [sample_attributes(rng) for _ in range(96)]
    frames = np.stack([render_face(a, 64) for a in attrs])
    acc = accuracy(model, frames_to_image(frames), labels_for(attrs))
    labels = labels_for(attrs)
    for i, h in enumerate(HEADS):
        defined = labels[:, i] != IGNORE
        majority = np.bincount(labels[defined, i]).max() / defined.sum()
        assert acc[h.name] >= 0.85 and acc[h.name] > majority, (h.name, acc[h.name], majority)
    # larger frames are resized inside and still recognised
    big = frames_to_image(np.stack([render_face(a, 128) for a in attrs[:32]]))
    acc_big = accuracy(model, big, labels[:32])
    assert min(acc_big.values()) >= 0.75


def test_mediapipe_finds_the_rendered_faces() -> None:
    pytest.importorskip("mediapipe")
    from tcve.landmarks import LandmarkBackendUnavailable, MediaPipeDetector

    try:
        detector = MediaPipeDetector(max_faces=1)
    except LandmarkBackendUnavailable as exc:
        pytest.skip(str(exc))
    rng = np.random.default_rng(7)
    size = 128
    errors = []
    for _ in range(6):
        a = sample_attributes(rng)
        faces = detector(render_face(a, size))
        assert len(faces) == 1
        errors.append(np.abs(faces[0].points - landmarks_for(a, size)).max() / size)
    detector.close()
    assert max(errors) < 0.05  # ground truth and detection agree to a few pixels


# ----------------------------------------------------------------------------- training helpers (no training runs)

def test_gaussian_fit_and_direction_fit_recover_planted_structure() -> None:
    from tcve.demo.train_directions import fit_normal, orthogonalise
    from tcve.demo.train_generator import fit_gaussian

    rng = np.random.default_rng(0)
    d = 16
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    codes = rng.normal(size=(4000, d)) @ mix.T + 3.0
    mu, sqrt_cov = fit_gaussian(torch.from_numpy(codes).float(), shrink=0.0)
    cov = mix @ mix.T
    assert np.abs(mu.numpy() - 3.0).max() < 0.1
    assert np.abs((sqrt_cov @ sqrt_cov).numpy() - cov).max() < 0.1 * np.abs(cov).max()
    planted = rng.normal(size=d)
    planted /= np.linalg.norm(planted)
    target = codes @ planted + 0.05 * rng.normal(size=len(codes))
    normal = fit_normal(codes, target, ridge=1e-4)
    assert abs(normal @ planted) > 0.99 and abs(np.linalg.norm(normal) - 1) < 1e-9
    other = rng.normal(size=d)
    ortho = orthogonalise(normal, [other])
    assert abs(ortho @ other) < 1e-9 and abs(np.linalg.norm(ortho) - 1) < 1e-9


def test_demo_generator_architecture_fits_the_pack() -> None:
    from tcve.demo.train_generator import DEMO_STYLE_DIM, build_demo_generator

    g = build_demo_generator()
    n_bytes = sum(p.numel() for p in g.state_dict().values()) * 4
    assert n_bytes < 5_000_000
    assert (g.size, g.style_dim, g.n_latent) == (64, DEMO_STYLE_DIM, 10)
    with torch.no_grad():
        image = g(torch.randn(2, DEMO_STYLE_DIM), input_is="z", noise_mode="none")
    assert image.shape == (2, 3, 64, 64)


def test_ink_sketch_is_lines_on_paper() -> None:
    from tcve.demo.train_style import PAPER, ink_sketch

    frame = render_face(FaceAttributes(eyeglasses=True), 128)
    sketch = ink_sketch(frame)
    assert sketch.shape == frame.shape and sketch.dtype == np.uint8
    gray = sketch.astype(np.float32).mean(-1)
    assert np.abs(sketch[2, 2].astype(np.float32) - PAPER).max() < 40  # the backdrop turns to paper
    assert (gray < 90).mean() > 0.01  # ink lines exist ...
    assert (gray < 90).mean() < 0.2  # ... but the page is mostly paper
    hue_spread = np.abs(sketch.astype(np.float32) - sketch.astype(np.float32).mean(-1, keepdims=True)).mean()
    assert hue_spread < 10  # monochrome


def test_closed_form_mapping_is_exact_and_the_w_shift_changes_no_image() -> None:
    from tcve.demo.train_generator import build_demo_generator, set_mapping

    g = build_demo_generator().eval()
    d = g.style_dim
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(2, d, generator=gen)
    with torch.no_grad():
        before = g(w, input_is="w", noise_mode="none")
    mix = torch.randn(d, d, generator=gen) / d ** 0.5
    sqrt_cov = (mix @ mix.T + 0.1 * torch.eye(d))
    eigval, eigvec = torch.linalg.eigh(sqrt_cov)
    sqrt_cov = (eigvec * eigval.sqrt()) @ eigvec.T  # symmetric square root of an SPD matrix
    mu = torch.randn(d, generator=gen)
    shift = set_mapping(g, mu, sqrt_cov)
    with torch.no_grad():
        after = g(w + shift, input_is="w", noise_mode="none")
        z = torch.randn(512, d, generator=gen)
        zn = z * torch.rsqrt(z.square().mean(1, keepdim=True) + 1e-8)
        mapped = g.mapping(z)
    assert (after - before).abs().max() < 1e-4  # same images in the shifted W space
    assert (mapped - (mu + shift + zn @ sqrt_cov.T)).abs().max() < 1e-3 * mapped.abs().max()
    assert torch.allclose(g.latent_avg, mu + shift)

"""tcve.landmarks: both backends reduce to the same four FFHQ points; face-alignment is mocked (no weights offline)."""

from __future__ import annotations

import sys
import types

import cv2
import numpy as np
import pytest
import torch
from skimage import data

from tcve.landmarks import (IBUG_EYE_LEFT, FaceAlignmentDetector, LandmarkBackendUnavailable, MediaPipeDetector,
                            ibug68_to_points, load_detector, mediapipe_to_points)


@pytest.fixture(scope="module")
def mediapipe() -> MediaPipeDetector:
    det = MediaPipeDetector()
    yield det
    det.close()


def _ibug68(rng: np.random.Generator) -> np.ndarray:
    lm = rng.uniform(0, 100, (68, 2))
    lm[36:42] = [30, 40] + rng.normal(0, 2, (6, 2))
    lm[42:48] = [70, 40] + rng.normal(0, 2, (6, 2))
    lm[48], lm[54] = [35, 80], [65, 80]
    return lm


def test_ibug68_mapping_takes_eye_means_and_mouth_corners():
    lm = _ibug68(np.random.default_rng(0))
    pts = ibug68_to_points(lm)
    assert pts.shape == (4, 2)
    np.testing.assert_allclose(pts[0], lm[list(IBUG_EYE_LEFT)].mean(0))
    np.testing.assert_allclose(pts[1], lm[42:48].mean(0))
    np.testing.assert_allclose(pts[2:], lm[[48, 54]])
    with pytest.raises(ValueError):
        ibug68_to_points(lm[:60])
    with pytest.raises(ValueError):
        mediapipe_to_points(lm)


def test_face_alignment_backend_with_injected_model():
    lm = _ibug68(np.random.default_rng(1))

    class FakeFan:
        calls = 0

        def get_landmarks_from_image(self, image, return_landmark_score=False, return_bboxes=False):
            FakeFan.calls += 1
            assert image.dtype == np.uint8 and image.shape == (100, 120, 3)
            if FakeFan.calls == 2:
                return (None, None, None)  # face-alignment's "no face" answer
            return [lm, lm + [200, 0]], None, [np.array([0, 0, 100, 100, 0.9]), np.array([200, 0, 300, 100, 0.6])]

    det = FaceAlignmentDetector(model=FakeFan())
    faces = det(np.zeros((100, 120, 3), np.uint8))
    assert len(faces) == 2 and faces[0].score == pytest.approx(0.9) and faces[1].score == pytest.approx(0.6)
    np.testing.assert_allclose(faces[1].points, ibug68_to_points(lm) + [200, 0])
    assert faces[0].box == pytest.approx((lm[:, 0].min(), lm[:, 1].min(), lm[:, 0].max(), lm[:, 1].max()))
    assert det(np.zeros((100, 120, 3), np.uint8)) == []


def test_face_alignment_is_imported_lazily_and_fails_clearly(monkeypatch):
    built = {}

    class FailingFA:
        def __init__(self, landmarks_type, device, face_detector, **kw):
            built.update(device=device, face_detector=face_detector)
            raise OSError("<urlopen error [Errno -2] Name or service not known>")

    fake = types.SimpleNamespace(FaceAlignment=FailingFA, LandmarksType=types.SimpleNamespace(TWO_D="2D"))
    monkeypatch.setitem(sys.modules, "face_alignment", fake)
    det = FaceAlignmentDetector(device="cpu", face_detector="blazeface")  # nothing is built yet
    assert built == {}
    with pytest.raises(LandmarkBackendUnavailable, match="could not load its models.*MediaPipe"):
        det(np.zeros((8, 8, 3), np.uint8))
    assert built == {"device": "cpu", "face_detector": "blazeface"}
    with pytest.raises(LandmarkBackendUnavailable):
        load_detector("face-alignment", device="cpu")
    with pytest.raises(ValueError):
        load_detector("dlib")


def test_mediapipe_finds_the_astronaut_eyes_and_mouth(mediapipe):
    img = data.astronaut()
    faces = mediapipe(img)
    assert len(faces) == 1
    p = faces[0].points
    # positions read off the 512x512 photo: eyes ~ (204,102), (247,104); mouth corners ~ (201,139), (245,142)
    np.testing.assert_allclose(p, [[204, 102], [247, 104], [201, 139], [245, 142]], atol=4)
    assert p[0, 0] < p[1, 0] and p[2, 0] < p[3, 0]  # image-left before image-right, like iBUG
    assert mediapipe(np.full((256, 256, 3), 127, np.uint8)) == []


def test_mediapipe_points_follow_a_known_transform(mediapipe):
    img = data.astronaut()
    p0 = mediapipe(img)[0].points
    m = cv2.getRotationMatrix2D((225.0, 125.0), 10.0, 1.2)
    m[:, 2] += [15.0, -8.0]
    moved = cv2.warpAffine(img, m, (512, 512), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    p1 = mediapipe(moved)[0].points
    expected = p0 @ m[:, :2].T + m[:, 2]
    err = np.linalg.norm(p1 - expected, axis=1)
    eye_dist = np.linalg.norm(expected[1] - expected[0])
    assert err.max() < 0.06 * eye_dist  # a few px on a ~50 px eye distance


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA, 'auto' tries face-alignment first")
def test_auto_backend_is_mediapipe_without_cuda():
    det = load_detector("auto")
    assert isinstance(det, MediaPipeDetector)
    det.close()


def test_mediapipe_finds_a_small_face_in_a_wide_frame(mediapipe):
    # a 720p frame with a ~110 px face: FaceMesh's selfie detector alone misses it; the full-range fallback finds it
    canvas = np.full((720, 1280, 3), 128, np.uint8)
    canvas[100:612, 384:896] = data.astronaut()
    faces = mediapipe(canvas)
    assert len(faces) == 1
    expected = np.array([[204, 102], [247, 104], [201, 139], [245, 142]]) + [384, 100]
    np.testing.assert_allclose(faces[0].points, expected, atol=4)

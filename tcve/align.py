"""Face tracking, FFHQ alignment with temporal smoothing, and feathered paste-back.

Coordinates: (x, y) pixel-index coordinates, i.e. pixel (i, j) has its centre at x=j, y=i, in the frame (full video
resolution) or in the aligned crop (`output_size` square). An `AlignTransform` holds the FFHQ quad of one frame and the
affine maps crop <-> frame, so the pipeline can un-align anything it produced at crop resolution.

Passes over a clip (each can stream the frames again from the video, only crops are held):
    track = detect_and_track(iter_frames(path), detector)            # pass 1: landmarks, main face, gaps filled
    transforms = compute_transforms(track, AlignConfig())            # smoothing of the quads (no frames needed)
    crops = np.stack(list(align_frames(iter_frames(path), transforms)))   # pass 2: aligned crops [T,S,S,3]
    for frame in paste_frames(iter_frames(path), edited_crops, transforms): ...   # pass 3: paste-back
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter1d

from tcve.errors import NoFaceFound
from tcve.landmarks import Face, LandmarkDetector

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlignConfig:
    output_size: int = 1024  # crop side = the generator's resolution
    # Temporal smoothing of the quad (STIT: gaussian_filter1d over time on the crop centre, sigma 1, and on the crop's
    # axis vectors, sigma 3). 0 disables that part.
    sigma_center: float = 1.0
    sigma_axes: float = 3.0
    # VideoEditGAN's centred moving average of the landmarks over this many frames before the quad; 1 = off.
    landmark_window: int = 1
    padding: bool = True  # quads leaving the frame: reflect, blurred towards the median colour (FFHQ script)
    # Paste-back alpha in crop coordinates: 0 within `feather_inset` of the crop edge, then a smooth ramp of width
    # `feather_width` (fractions of the crop side) up to 1; corners are rounded by the separable product.
    feather_inset: float = 0.03
    feather_width: float = 0.12
    # 'feather': alpha blend of the crop. 'poisson': the crop is first Poisson-blended (cv2.seamlessClone, STIT's main
    # output) into the frame inside the alpha > 0.5 region, which removes colour/brightness offsets at the boundary.
    blend: str = "feather"
    # Resampling of the crop and paste-back warps: 'cubic' keeps the align -> paste round trip sharper than 'linear'.
    interpolation: str = "cubic"
    detect_max_side: int | None = 1280  # landmarks on a downscaled copy of big frames (speed); None = full size
    gate: float = 1.5  # a face counts as the same person if its centre moved less than gate * face size
    # When is the face gone rather than missed? A detector misses a visible face for a frame or two (blur, a hand);
    # those frames are filled from their neighbours. A run of more than `lost_after` missed frames means the face
    # has left the frame (or is hidden): those frames are kept as they are, never given an edited face (a ghost).
    # Detections scoring below `min_score` (the backend's confidence; MediaPipe reports 1) count as misses.
    lost_after: int = 3
    min_score: float = 0.0
    # The generator's framing relative to the FFHQ quad (FFHQ: 1, 0): the quad's half-axes are multiplied by
    # quad_scale and its centre moved down by quad_shift FFHQ half-axes (the demo pack's renders sit wider and lower).
    quad_scale: float = 1.0
    quad_shift: float = 0.0


# -------------------------------------------------------------------------------------------------------- tracking


@dataclass(frozen=True)
class FaceTrack:
    """The main face over a clip. points [T,4,2] (tcve.landmarks layout), gaps filled by interpolation."""

    points: np.ndarray
    detected: np.ndarray  # [T] bool: landmarks came from the detector in that frame (else interpolated)
    frame_size: tuple[int, int]  # (H, W)
    max_faces: int  # most faces seen in one frame
    messages: tuple[str, ...] = ()  # user-facing notes (several faces, frames filled in)
    visible: np.ndarray | None = None  # [T] bool: the face is in view (detected or briefly missed); None: all

    @property
    def n_frames(self) -> int:
        return int(self.points.shape[0])

    @property
    def visible_mask(self) -> np.ndarray:
        return np.ones(self.n_frames, bool) if self.visible is None else np.asarray(self.visible, bool)


def visible_runs(mask: np.ndarray, value: bool = True) -> list[tuple[int, int]]:
    """[start, stop) index ranges where ``mask`` equals ``value``, in order."""
    mask = np.asarray(mask, bool)
    runs, start = [], None
    for t, v in enumerate(mask.tolist() + [not value]):
        if v == value and start is None:
            start = t
        elif v != value and start is not None:
            runs.append((start, t))
            start = None
    return runs


def _visible_from_detections(detected: np.ndarray, lost_after: int) -> np.ndarray:
    """Frames where the face counts as in view: detected, or within a run of at most ``lost_after`` misses."""
    visible = detected.copy()
    for a, b in visible_runs(detected, value=False):
        if b - a <= lost_after:
            visible[a:b] = True
    return visible


def _pick_first(faces: Sequence[Face], frame_size: tuple[int, int]) -> Face:
    """Main face: large and central (size, discounted by the distance of its centre from the frame centre)."""
    h, w = frame_size
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    diag = math.hypot(w, h)

    def score(face: Face) -> float:
        return face.size * (1.0 - 0.5 * float(np.linalg.norm(face.center - centre)) / diag) * max(face.score, 1e-3)

    return max(faces, key=score)


def track_faces(detections: Sequence[Sequence[Face]], frame_size: tuple[int, int], gate: float = 1.5,
                lost_after: int | None = None, min_score: float = 0.0) -> FaceTrack:
    """Follows the main face through per-frame detections and fills frames where it was missed.

    The main face is picked in the first frame with any face (largest / most central); afterwards the face nearest to
    its last position is kept if it moved less than `gate` face sizes, so a second person never takes over.
    With `lost_after` set, a run of more than that many missed frames marks the face as gone there (`visible` is
    False; see `AlignConfig.lost_after`), and the main face is picked afresh when a face comes back.
    Raises NoFaceFound when no frame has a face.
    """
    n = len(detections)
    points = np.zeros((n, 4, 2))
    detected = np.zeros(n, dtype=bool)
    last: Face | None = None
    last_t = -1
    for t, faces in enumerate(detections):
        faces = [f for f in faces if f.score >= min_score]
        if not faces:
            continue
        if lost_after is not None and last is not None and t - last_t - 1 > lost_after:
            last = None  # the face was gone: whoever comes back is tracked as the main face again
        if last is None:
            chosen = _pick_first(faces, frame_size)
        else:
            dist = [float(np.linalg.norm(f.center - last.center)) for f in faces]
            i = int(np.argmin(dist))
            if dist[i] > gate * max(last.size, 1.0):
                continue  # only other people in view: treat as a miss of the main face
            chosen = faces[i]
        points[t], detected[t], last, last_t = chosen.points, True, chosen, t
    if not detected.any():
        raise NoFaceFound(f"No face was found in any of the {n} frames. Use a clip where the face is visible and "
                          "roughly frontal.")
    idx = np.flatnonzero(detected)
    if len(idx) < n:  # interpolate each coordinate over time; the ends hold the nearest detection
        t = np.arange(n)
        flat = points.reshape(n, -1)
        for k in range(flat.shape[1]):
            flat[:, k] = np.interp(t, idx, flat[idx, k])
        points = flat.reshape(n, 4, 2)
    max_faces = max((len(f) for f in detections), default=0)
    visible = _visible_from_detections(detected, lost_after) if lost_after is not None else np.ones(n, bool)
    filled = int(visible.sum()) - len(idx)
    messages = []
    if max_faces > 1:
        messages.append(f"Up to {max_faces} faces are visible; only the main (largest, most central) one is edited.")
    if filled:
        messages.append(f"The face was not detected in {filled} of {n} frames; those were filled in from "
                        "neighbouring frames.")
    for m in messages:
        logger.info(m)
    return FaceTrack(points, detected, tuple(frame_size), max_faces, tuple(messages), visible)


def detect_and_track(frames: Iterable[np.ndarray], detector: LandmarkDetector, config: AlignConfig = AlignConfig()
                     ) -> FaceTrack:
    """Pass 1: landmarks on every frame ([H,W,3] uint8 RGB, streamed), then `track_faces`."""
    detections: list[list[Face]] = []
    frame_size: tuple[int, int] | None = None
    for frame in frames:
        frame_size = frame.shape[:2]
        scale = 1.0
        if config.detect_max_side is not None and max(frame_size) > config.detect_max_side:
            scale = config.detect_max_side / max(frame_size)
            small = cv2.resize(frame, (round(frame_size[1] * scale), round(frame_size[0] * scale)),
                               interpolation=cv2.INTER_AREA)
        else:
            small = frame
        faces = detector(small)
        if scale != 1.0:  # back to full-resolution pixel-index coordinates
            sx, sy = frame_size[1] / small.shape[1], frame_size[0] / small.shape[0]
            s = np.array([sx, sy])
            faces = [Face((f.points + 0.5) * s - 0.5,
                          ((f.box[0] + 0.5) * sx - 0.5, (f.box[1] + 0.5) * sy - 0.5,
                           (f.box[2] + 0.5) * sx - 0.5, (f.box[3] + 0.5) * sy - 0.5), f.score) for f in faces]
        detections.append(faces)
    if frame_size is None:
        raise NoFaceFound("The clip has no frames to look for a face in.")
    return track_faces(detections, frame_size, config.gate, config.lost_after, config.min_score)


# ------------------------------------------------------------------------------------------------------ FFHQ quads


def quad_axes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """FFHQ crop centre c and half-axis x (pointing to the crop's right), both [...,2], from points [...,4,2].

    The dataset script's construction: eye-to-eye and eye-to-mouth vectors give the orientation and the scale
    max(2 |eye-to-eye|, 1.8 |eye-to-mouth|); the centre sits 0.1 eye-to-mouth below the eyes' midpoint.
    """
    p = np.asarray(points, dtype=np.float64)
    eye_avg = (p[..., 0, :] + p[..., 1, :]) / 2
    eye_to_eye = p[..., 1, :] - p[..., 0, :]
    eye_to_mouth = (p[..., 2, :] + p[..., 3, :]) / 2 - eye_avg
    x = eye_to_eye - _perp(eye_to_mouth)
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    scale = np.maximum(np.linalg.norm(eye_to_eye, axis=-1) * 2.0, np.linalg.norm(eye_to_mouth, axis=-1) * 1.8)
    return eye_avg + 0.1 * eye_to_mouth, x * scale[..., None]


def framed_axes(points: np.ndarray, config: AlignConfig) -> tuple[np.ndarray, np.ndarray]:
    """``quad_axes`` re-framed for the generator's domain (``quad_scale``, ``quad_shift``; identity for FFHQ)."""
    c, x = quad_axes(points)
    if config.quad_shift:
        c = c + config.quad_shift * _perp(x)
    return c, x * config.quad_scale


def _perp(v: np.ndarray) -> np.ndarray:
    # flipud(v) * [-1, 1] of the FFHQ script: rotates (a, b) to (-b, a)
    return np.stack([-v[..., 1], v[..., 0]], axis=-1)


def quad_from_axes(c: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Quad [...,4,2] in the order top-left, bottom-left, bottom-right, top-right (the FFHQ script's order)."""
    y = _perp(x)
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y], axis=-2)


def smooth_axes(c: np.ndarray, x: np.ndarray, config: AlignConfig) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian smoothing over time (axis 0) of centres [T,2] and half-axes [T,2]; edges held ('nearest')."""
    if config.sigma_center > 0 and len(c) > 1:
        c = gaussian_filter1d(c, config.sigma_center, axis=0, mode="nearest")
    if config.sigma_axes > 0 and len(x) > 1:
        x = gaussian_filter1d(x, config.sigma_axes, axis=0, mode="nearest")
    return c, x


def _moving_average(points: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(points) < 2:
        return points
    pre = (window - 1) // 2
    post = window - 1 - pre
    padded = np.concatenate([np.repeat(points[:1], pre, 0), points, np.repeat(points[-1:], post, 0)])
    kernel = np.cumsum(np.concatenate([np.zeros((1, *points.shape[1:])), padded]), axis=0)
    return (kernel[window:] - kernel[:-window]) / window


@dataclass(frozen=True)
class AlignTransform:
    """One frame's alignment: FFHQ quad [4,2] (TL, BL, BR, TR) in frame pixel-index coordinates, crop side, frame size.
    """

    quad: np.ndarray
    output_size: int
    frame_size: tuple[int, int]  # (H, W)
    detected: bool = True  # False when the landmarks were interpolated

    @property
    def qsize(self) -> float:
        """Side of the quad in frame pixels."""
        return float(np.linalg.norm(self.quad[3] - self.quad[0]))

    @property
    def crop_to_frame(self) -> np.ndarray:
        """3x3 affine: crop pixel-index (u, v, 1) -> frame pixel-index (x, y, 1).

        The crop's edges (continuous coordinates 0 and S) land on the quad's edges, like PIL's QUAD transform of
        quad + 0.5 in the FFHQ script.
        """
        s = self.output_size
        q = np.asarray(self.quad, dtype=np.float64)
        ex, ey = (q[3] - q[0]) / s, (q[1] - q[0]) / s
        t = q[0] + 0.5 * (ex + ey)
        return np.array([[ex[0], ey[0], t[0]], [ex[1], ey[1], t[1]], [0.0, 0.0, 1.0]])

    @property
    def frame_to_crop(self) -> np.ndarray:
        return np.linalg.inv(self.crop_to_frame)

    def with_output_size(self, size: int) -> AlignTransform:
        return AlignTransform(self.quad, size, self.frame_size, self.detected)

    def frame_points_to_crop(self, pts: np.ndarray) -> np.ndarray:
        """Points [...,2] in frame coordinates -> crop coordinates."""
        m = self.frame_to_crop
        return pts @ m[:2, :2].T + m[:2, 2]

    def crop_points_to_frame(self, pts: np.ndarray) -> np.ndarray:
        m = self.crop_to_frame
        return pts @ m[:2, :2].T + m[:2, 2]


def compute_transforms(track: FaceTrack, config: AlignConfig = AlignConfig()) -> list[AlignTransform]:
    """Per-frame FFHQ transforms from a track, smoothed over time so the aligned crops do not jitter.

    Each run of frames where the face is in view is smoothed on its own: a face that leaves and comes back elsewhere
    is not dragged across the gap (frames without the face keep their unsmoothed, held quad; nothing is pasted there).
    """
    quads = quad_from_axes(*framed_axes(track.points, config))
    for a, b in visible_runs(track.visible_mask):
        points = _moving_average(track.points[a:b], config.landmark_window)
        quads[a:b] = quad_from_axes(*smooth_axes(*framed_axes(points, config), config))
    return [AlignTransform(q, config.output_size, track.frame_size, bool(d)) for q, d in zip(quads, track.detected)]


def raw_transforms(track: FaceTrack, config: AlignConfig = AlignConfig()) -> list[AlignTransform]:
    """The same without any temporal smoothing (per-frame FFHQ crops), e.g. to measure jitter."""
    quads = quad_from_axes(*framed_axes(track.points, config))
    return [AlignTransform(q, config.output_size, track.frame_size, bool(d)) for q, d in zip(quads, track.detected)]


def stack_quads(transforms: Sequence[AlignTransform]) -> np.ndarray:
    """[T,4,2] quads, e.g. to save next to the crops (rebuild with `AlignTransform(quad, size, frame_size)`)."""
    return np.stack([t.quad for t in transforms])


def quad_jitter(quads: np.ndarray) -> float:
    """Mean frame-to-frame jitter of quads [T,4,2] in pixels: |q[t+1] - 2 q[t] + q[t-1]| averaged over corners and t.

    The second difference is ~0 for smooth motion (constant velocity), so what remains is the shake that makes a crop
    jitter.
    """
    q = np.asarray(quads, dtype=np.float64)
    if len(q) < 3:
        return 0.0
    acc = q[2:] - 2 * q[1:-1] + q[:-2]
    return float(np.linalg.norm(acc, axis=-1).mean())


# ------------------------------------------------------------------------------------------------------ crop / warp


def crop_face(frame: np.ndarray, transform: AlignTransform, config: AlignConfig = AlignConfig()) -> np.ndarray:
    """Aligned crop [S,S,3] uint8 of one frame [H,W,3] uint8 (S = transform.output_size)."""
    s = transform.output_size
    m = transform.crop_to_frame
    src = frame
    shrink = int(math.floor(transform.qsize / s))
    if shrink >= 2:  # large downscale: area-average first so bilinear sampling does not alias (FFHQ shrinks too)
        h, w = frame.shape[:2]
        nw, nh = max(1, round(w / shrink)), max(1, round(h / shrink))
        src = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA)
        sx, sy = nw / w, nh / h  # frame idx -> small idx: (x + 0.5) * sx - 0.5
        m = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]]) @ m
    border = cv2.BORDER_REFLECT_101 if config.padding else cv2.BORDER_CONSTANT
    crop = cv2.warpAffine(src, m[:2], (s, s), flags=_interp(config) | cv2.WARP_INVERSE_MAP, borderMode=border)
    if config.padding and _leaves_frame(transform):
        crop = _soften_padding(crop, src.shape[:2], m)
    return crop


def _interp(config: AlignConfig) -> int:
    try:
        modes = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4}
        return modes[config.interpolation]
    except KeyError:
        raise ValueError(f"interpolation must be linear, cubic or lanczos, got {config.interpolation!r}") from None


def _leaves_frame(transform: AlignTransform) -> bool:
    h, w = transform.frame_size
    q = transform.quad
    return bool(q[:, 0].min() < -0.5 or q[:, 1].min() < -0.5 or q[:, 0].max() > w - 0.5 or q[:, 1].max() > h - 0.5)


def _soften_padding(crop: np.ndarray, src_size: tuple[int, int], m: np.ndarray) -> np.ndarray:
    """Mirrored content outside the frame is blurred and faded to the median colour with distance (as FFHQ's script)."""
    s = crop.shape[0]
    # The fill is smooth by construction, so it is built at a quarter of the resolution (~16x cheaper at 1024).
    k = 4 if s >= 256 else 1
    sk = s // k
    mk = np.array([[k, 0, 0.5 * k - 0.5], [0, k, 0.5 * k - 0.5], [0, 0, 1.0]])  # small crop idx -> crop idx
    inside = cv2.warpAffine(np.ones(src_size, np.uint8), (m @ mk)[:2], (sk, sk),
                            flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=0)
    dist = cv2.distanceTransform((inside == 0).astype(np.uint8), cv2.DIST_L2, 5) * k  # crop px outside the frame
    small = cv2.resize(crop, (sk, sk), interpolation=cv2.INTER_AREA)
    blurred = cv2.GaussianBlur(small, (0, 0), max(0.02 * s / k, 1.0)).astype(np.float32)
    sample = small[inside > 0] if inside.any() else small.reshape(-1, 3)
    median = np.median(sample.reshape(-1, 3), axis=0).astype(np.float32)
    b = np.clip(dist / (0.3 * s), 0, 1)[..., None]
    fill = np.clip(blurred * (1 - b) + median * b, 0, 255).astype(np.uint8)
    a = np.clip(dist / (0.05 * s), 0, 1).astype(np.float32)
    fill = cv2.resize(fill, (s, s), interpolation=cv2.INTER_LINEAR)
    a = cv2.resize(a, (s, s), interpolation=cv2.INTER_LINEAR)
    # pixels that sample the real frame stay exact (the quarter-resolution ramp would bleed a few px inside)
    outside = cv2.warpAffine(np.zeros(src_size, np.float32), m[:2], (s, s),
                             flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=1.0)
    a *= outside
    return cv2.blendLinear(crop, fill, 1.0 - a, a)


def align_frames(frames: Iterable[np.ndarray], transforms: Sequence[AlignTransform],
                 config: AlignConfig = AlignConfig()) -> Iterator[np.ndarray]:
    """Pass 2: aligned crops [S,S,3] uint8, one per frame (streamed)."""
    n = 0
    for frame, transform in zip(frames, transforms):
        yield crop_face(frame, transform, config)
        n += 1
    if n != len(transforms):
        raise ValueError(f"{n} frames for {len(transforms)} transforms")


# ------------------------------------------------------------------------------------------------------ paste-back


def feather_mask(size: int, config: AlignConfig = AlignConfig()) -> np.ndarray:
    """Paste-back alpha [S,S] float32 in crop coordinates: 0 at the crop's edge, smooth ramp, 1 in the middle."""
    d = np.minimum(np.arange(size), np.arange(size)[::-1]).astype(np.float32)  # distance to the nearest edge, px
    r = np.clip((d - config.feather_inset * size) / max(config.feather_width * size, 1e-6), 0, 1)
    ramp = r * r * (3 - 2 * r)  # smoothstep: no kink where the ramp meets 0 or 1
    return np.outer(ramp, ramp).astype(np.float32)


def paste_face(frame: np.ndarray, crop: np.ndarray, transform: AlignTransform, mask: np.ndarray | None = None,
               config: AlignConfig = AlignConfig(), soften: bool = True) -> np.ndarray:
    """Puts an (edited) crop [S,S,3] uint8 back into its frame [H,W,3] uint8 through a feathered alpha.

    `mask`: optional face/hair mask [S,S] in [0,1] in crop coordinates (1 = take the crop); it is softened (unless
    `soften` is False: a mask that is already a feathered alpha, e.g. STIT's) and multiplied with the border
    feather. Pixels where the alpha is 0 are returned unchanged, bit for bit.
    """
    s = crop.shape[0]
    if crop.shape[:2] != (s, s) or crop.dtype != np.uint8:
        raise ValueError(f"crop must be [S,S,3] uint8, got {crop.dtype} {crop.shape}")
    transform = transform.with_output_size(s)
    alpha = feather_mask(s, config)
    if mask is not None:
        soft = np.asarray(mask, np.float32)
        if soften:
            soft = cv2.GaussianBlur(soft, (0, 0), max(config.feather_width * s / 4, 0.5))
        alpha = alpha * np.clip(soft, 0, 1)
    # When the crop is much larger than the face in the frame, area-downscale it first so the bilinear warp below
    # does not alias (and carry its alpha along the same way).
    target = int(math.ceil(transform.qsize * 2))  # 2x the face's size: the bilinear warp then barely aliases
    if target < s:
        crop = cv2.resize(crop, (target, target), interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(alpha, (target, target), interpolation=cv2.INTER_AREA)
        transform = transform.with_output_size(target)
    h, w = frame.shape[:2]
    q = transform.quad
    x0, y0 = max(int(math.floor(q[:, 0].min())) - 1, 0), max(int(math.floor(q[:, 1].min())) - 1, 0)
    x1, y1 = min(int(math.ceil(q[:, 0].max())) + 2, w), min(int(math.ceil(q[:, 1].max())) + 2, h)
    out = frame.copy()
    if x1 <= x0 or y1 <= y0:
        return out
    # frame ROI index -> crop index
    m = transform.frame_to_crop @ np.array([[1.0, 0, x0], [0, 1.0, y0], [0, 0, 1.0]])
    size = (x1 - x0, y1 - y0)
    flags = cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(crop, m[:2], size, flags=flags | _interp(config), borderMode=cv2.BORDER_REPLICATE)
    a = cv2.warpAffine(alpha, m[:2], size, flags=flags | cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                       borderValue=0.0)
    roi = out[y0:y1, x0:x1]
    if config.blend == "poisson":
        warped = _poisson(roi, warped, a)
    elif config.blend != "feather":
        raise ValueError(f"blend must be 'feather' or 'poisson', got {config.blend!r}")
    sel = a > 0
    blend = roi.astype(np.float32) * (1 - a[..., None]) + warped.astype(np.float32) * a[..., None]
    roi[sel] = np.clip(np.rint(blend[sel]), 0, 255).astype(np.uint8)
    return out


def _poisson(dst: np.ndarray, src: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """src Poisson-cloned into dst (same size) inside alpha > 0.5; returns the cloned image (alpha is applied later)."""
    mask = (alpha > 0.5).astype(np.uint8) * 255
    if not mask.any():
        return src
    pad = 4  # seamlessClone needs the mask's box strictly inside the destination
    dst_p = cv2.copyMakeBorder(dst, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    src_p = cv2.copyMakeBorder(src, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
    mask_p = cv2.copyMakeBorder(mask, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    x, y, w, h = cv2.boundingRect(mask_p)
    # OpenCV places the box at centre - (w/2, h/2) with integer division: this centre makes that exactly (x, y)
    cloned = cv2.seamlessClone(src_p, dst_p, mask_p, (x + w // 2, y + h // 2), cv2.NORMAL_CLONE)
    return cloned[pad:-pad, pad:-pad]


def paste_mask(transform: AlignTransform, config: AlignConfig = AlignConfig()) -> np.ndarray:
    """The alpha `paste_face` uses, in frame coordinates [H,W] float32 (where the frame can change)."""
    h, w = transform.frame_size
    s = transform.output_size
    a = cv2.warpAffine(feather_mask(s, config), transform.frame_to_crop[:2], (w, h),
                       flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    return a


def paste_frames(frames: Iterable[np.ndarray], crops: Iterable[np.ndarray], transforms: Sequence[AlignTransform],
                 masks: Iterable[np.ndarray | None] | None = None, config: AlignConfig = AlignConfig(),
                 soften: bool = True) -> Iterator[np.ndarray]:
    """Pass 3: full frames with the edited crops pasted back (streamed); masks as in `paste_face`."""
    masks = masks if masks is not None else (None for _ in transforms)
    for frame, crop, transform, mask in zip(frames, crops, transforms, masks, strict=True):
        yield paste_face(frame, crop, transform, mask, config, soften)


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray | None = None) -> float:
    """PSNR in dB between uint8 images, optionally only where `where` [H,W] is true."""
    d = a.astype(np.float64) - b.astype(np.float64)
    if where is not None:
        d = d[where]
    mse = float(np.mean(d**2)) if d.size else 0.0
    return float("inf") if mse == 0 else 10 * math.log10(255.0**2 / mse)


__all__ = [
    "AlignConfig", "AlignTransform", "FaceTrack", "align_frames", "compute_transforms", "crop_face", "detect_and_track",
    "feather_mask", "paste_face", "paste_frames", "paste_mask", "psnr", "quad_axes", "quad_from_axes", "quad_jitter",
    "raw_transforms", "smooth_axes", "stack_quads", "track_faces", "visible_runs",
]

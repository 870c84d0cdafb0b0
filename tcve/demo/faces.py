"""Procedural face domain of the demo pack: a renderer with controllable attributes and talking-head clips.

Every face is drawn from a `FaceAttributes` record, so each frame comes with exact ground truth (the labels the
demo classifier learns, the directions the demo editors are fitted on, and the eye/mouth landmarks).

Geometry: face features are defined on a "face plane" (u, v) in units of the head's half-width (u to the image's
right, v down), lifted onto an ellipsoid (half-axes 1, 1.3, 0.8) so that yaw and pitch move them like a 3-D head,
then rolled, scaled and placed in the image. Drawing happens at 4x the output size and is reduced with
cv2.INTER_AREA, which antialiases every edge.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

SIZES = (64, 128, 256)
SUPERSAMPLE = 4
_SHIFT = 4  # cv2 fixed-point bits for sub-pixel drawing
_DEPTH = 0.8  # head ellipsoid depth (half-width = 1)
_HEIGHT = 1.3  # head ellipsoid half-height


def _rng_field(lo: float, hi: float, default: float, doc: str) -> float:
    return field(default=default, metadata={"range": (lo, hi), "doc": doc})


@dataclass(frozen=True)
class FaceAttributes:
    """Everything that defines one rendered face. Continuous fields carry their range in `metadata['range']`."""

    # pose and placement
    yaw: float = _rng_field(-0.5, 0.5, 0.0, "head turn in radians, positive = face turns to the image's right")
    pitch: float = _rng_field(-0.25, 0.25, 0.0, "nod in radians, positive = looks down")
    roll: float = _rng_field(-0.25, 0.25, 0.0, "in-plane tilt in radians, positive = clockwise")
    center_x: float = _rng_field(-0.06, 0.06, 0.0, "head centre offset, fraction of the image width")
    center_y: float = _rng_field(-0.05, 0.05, 0.0, "head centre offset, fraction of the image height")
    scale: float = _rng_field(0.88, 1.12, 1.0, "head size factor")
    # expression
    mouth_open: float = _rng_field(0.0, 1.0, 0.0, "0 = lips closed, 1 = wide open")
    smile: float = _rng_field(-0.4, 1.0, 0.0, "mouth-corner lift; negative = frown, 1 = broad smile")
    blink: float = _rng_field(0.0, 1.0, 0.0, "eyelid closure, 1 = closed")
    brows: float = _rng_field(-1.0, 1.0, 0.0, "-1 = angry (inner ends down), 0 = neutral, 1 = surprised (raised)")
    gaze_x: float = _rng_field(-1.0, 1.0, 0.0, "iris offset, fraction of its free travel")
    # identity
    skin_tone: float = _rng_field(0.0, 1.0, 0.3, "0 = very light ... 1 = very dark")
    hair_color: float = _rng_field(0.0, 1.0, 0.2, "0 = black, 0.25 dark brown, 0.5 brown, 0.75 auburn, 1 blonde")
    hair_style: int = field(default=0, metadata={"choices": (0, 1, 2), "doc": "0 short, 1 long, 2 buzz cut"})
    age: float = _rng_field(0.0, 1.0, 0.2, "greying hair, wrinkles, heavier lids")
    face_width: float = _rng_field(0.9, 1.1, 1.0, "head width relative to its height")
    eyeglasses: bool = field(default=False, metadata={"doc": "rimmed glasses with bridge and temples"})
    beard: bool = field(default=False, metadata={"doc": "full beard and moustache in the hair colour"})
    # scene
    background_hue: float = _rng_field(0.0, 1.0, 0.55, "hue of the backdrop")
    shirt_hue: float = _rng_field(0.0, 1.0, 0.6, "hue of the shirt")

    def replace(self, **changes: float | int | bool) -> "FaceAttributes":
        return dataclasses.replace(self, **changes)

    def clipped(self) -> "FaceAttributes":
        """A copy with every continuous field clamped into its range."""
        values = {}
        for f in dataclasses.fields(self):
            lo_hi = f.metadata.get("range")
            v = getattr(self, f.name)
            values[f.name] = min(max(float(v), lo_hi[0]), lo_hi[1]) if lo_hi else v
        return FaceAttributes(**values)

    def as_dict(self) -> dict[str, float | int | bool]:
        return dataclasses.asdict(self)


CONTINUOUS = tuple(f.name for f in dataclasses.fields(FaceAttributes) if "range" in f.metadata)
IDENTITY = ("skin_tone", "hair_color", "hair_style", "age", "face_width", "eyeglasses", "beard", "background_hue",
            "shirt_hue")


def attribute_range(name: str) -> tuple[float, float]:
    for f in dataclasses.fields(FaceAttributes):
        if f.name == name:
            return f.metadata["range"]
    raise KeyError(name)


def sample_attributes(rng: np.random.Generator) -> FaceAttributes:
    """A random face. Expressions are drawn as mixtures so that both sides of each classifier threshold are common."""
    values: dict[str, float | int | bool] = {}
    for name in CONTINUOUS:
        lo, hi = attribute_range(name)
        values[name] = float(rng.uniform(lo, hi))
    values["age"] = float(rng.beta(1.3, 2.2))
    # expressions: half neutral-ish, half strong, so every label is balanced
    values["mouth_open"] = float(rng.uniform(0.0, 0.2) if rng.random() < 0.5 else rng.uniform(0.3, 1.0))
    values["blink"] = float(rng.uniform(0.0, 0.25) if rng.random() < 0.7 else rng.uniform(0.6, 1.0))
    values["smile"] = float(rng.uniform(-0.4, 0.25) if rng.random() < 0.5 else rng.uniform(0.5, 1.0))
    values["brows"] = float(rng.choice([rng.uniform(-1.0, -0.5), rng.uniform(-0.25, 0.25), rng.uniform(0.5, 1.0)]))
    values["hair_style"] = int(rng.choice(3, p=(0.5, 0.35, 0.15)))
    values["eyeglasses"] = bool(rng.random() < 0.4)
    values["beard"] = bool(rng.random() < 0.3)
    return FaceAttributes(**values)


# ----------------------------------------------------------------------------- colours

_SKIN = np.array([(250, 222, 200), (236, 192, 160), (205, 150, 110), (150, 98, 66), (92, 60, 42)], np.float64)
_HAIR = np.array([(28, 24, 24), (64, 42, 30), (112, 74, 46), (150, 66, 36), (222, 190, 122)], np.float64)
_GREY = np.array((196, 196, 200), np.float64)


def _palette(table: np.ndarray, t: float) -> np.ndarray:
    x = float(np.clip(t, 0, 1)) * (len(table) - 1)
    i = min(int(x), len(table) - 2)
    return table[i] + (x - i) * (table[i + 1] - table[i])


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    rgb = cv2.cvtColor(np.array([[[h * 179.0, s * 255.0, v * 255.0]]], np.float32).astype(np.uint8), cv2.COLOR_HSV2RGB)
    return rgb[0, 0].astype(np.float64)


def face_colors(a: FaceAttributes) -> dict[str, np.ndarray]:
    skin = _palette(_SKIN, a.skin_tone)
    hair = _palette(_HAIR, a.hair_color)
    hair = hair + min(1.0, 1.3 * a.age ** 2) * (_GREY - hair)
    return {
        "skin": skin,
        "skin_dark": skin * 0.78,
        "lips": skin * np.array([0.86, 0.55, 0.55]) + np.array([30, 0, 0]),
        "hair": hair,
        "beard": hair * 0.9,
        "brow": hair * 0.75 + _HAIR[0] * 0.25,
        "iris": np.array((70, 90, 60)) + 60 * a.hair_color,
        "shirt": _hsv(a.shirt_hue, 0.55, 0.65),
        "background": _hsv(a.background_hue, 0.28, 0.8),
    }


# ----------------------------------------------------------------------------- geometry

@dataclass(frozen=True)
class _Pose:
    """Face plane (u, v[, dz]) -> output-pixel coordinates."""

    size: int
    a: FaceAttributes

    @property
    def radius(self) -> float:  # head half-width in output pixels
        return 0.27 * self.size * self.a.scale * self.a.face_width

    @property
    def vscale(self) -> float:  # head height factor relative to width
        return 1.0 / self.a.face_width

    @property
    def center(self) -> np.ndarray:
        return np.array([(0.5 + self.a.center_x) * self.size - 0.5, (0.47 + self.a.center_y) * self.size - 0.5])

    def project(self, uv: np.ndarray, dz: np.ndarray | float = 0.0, surface: bool = True) -> np.ndarray:
        """uv [N,2] face-plane points (optionally lifted by dz) -> [N,2] output pixel coordinates."""
        uv = np.asarray(uv, np.float64).reshape(-1, 2)
        u, v = uv[:, 0], uv[:, 1] * self.vscale
        if surface:
            z = _DEPTH * np.sqrt(np.clip(1.0 - u ** 2 - (v / _HEIGHT) ** 2, 0.0, None)) + dz
        else:
            z = np.zeros_like(u) + dz
        cy, sy = math.cos(self.a.yaw), math.sin(self.a.yaw)
        x = u * cy + z * sy
        z2 = -u * sy + z * cy
        cp, sp = math.cos(self.a.pitch), math.sin(self.a.pitch)
        y = v * cp + z2 * sp
        cr, sr = math.cos(self.a.roll), math.sin(self.a.roll)
        xr, yr = x * cr - y * sr, x * sr + y * cr
        return self.center + self.radius * np.stack([xr, yr], axis=1)

    def outline(self, n: int = 72, t: np.ndarray | None = None) -> np.ndarray:
        """Head silhouette (egg shape: narrower jaw), [n,2] output pixels; `t` picks angles (pi..2pi = the top)."""
        t = np.linspace(0, 2 * np.pi, n, endpoint=False) if t is None else t
        sx = math.sqrt(math.cos(self.a.yaw) ** 2 + (_DEPTH * math.sin(self.a.yaw)) ** 2)
        sy = _HEIGHT * self.vscale * math.sqrt(math.cos(self.a.pitch) ** 2 + (0.6 * math.sin(self.a.pitch)) ** 2)
        jaw = 1.0 - 0.17 * np.clip(np.sin(t), 0, None) ** 2
        x = sx * np.cos(t) * jaw
        y = sy * np.sin(t)
        cr, sr = math.cos(self.a.roll), math.sin(self.a.roll)
        return self.center + self.radius * np.stack([x * cr - y * sr, x * sr + y * cr], axis=1)


def _eye_shape(a: FaceAttributes, side: int) -> tuple[np.ndarray, float, float, float, float]:
    """Eye centre (u, v), half-width, upper and lower opening (face-plane units) for side -1 (left) / +1 (right)."""
    cx, cy = 0.37 * side, -0.06
    hw = 0.19
    openness = (1.0 - a.blink) * (1.0 + 0.35 * max(a.brows, 0.0) - 0.15 * max(-a.brows, 0.0))
    openness *= 1.0 - 0.15 * max(a.smile, 0.0)  # smiling eyes narrow (cheeks rise)
    openness *= 1.0 - 0.25 * a.age
    return np.array([cx, cy]), hw, 0.1 * openness, 0.055 * openness + 0.004, openness


def _lid_curves(a: FaceAttributes, side: int, n: int = 16) -> tuple[np.ndarray, np.ndarray]:
    c, hw, up, lo, _ = _eye_shape(a, side)
    t = np.linspace(0, np.pi, n)
    x = c[0] + hw * np.cos(t) * side
    # the upper lid peaks slightly towards the inner corner, as real eyes do
    upper = np.stack([x, c[1] - up * np.sin(t) ** 0.9], 1)
    lower = np.stack([x[::-1], c[1] + lo * np.sin(t[::-1]) ** 1.1], 1)
    return upper, lower


def _mouth_curves(a: FaceAttributes, n: int = 21) -> dict[str, np.ndarray]:
    """Face-plane polylines of the mouth, each from the left corner to the right corner."""
    cy = 0.6
    open_ = a.mouth_open
    hw = 0.28 + 0.13 * max(a.smile, 0.0) - 0.05 * open_ - 0.03 * max(-a.smile, 0.0)
    corner = cy - 0.2 * a.smile
    u = np.linspace(-hw, hw, n)
    bump = 1.0 - (u / hw) ** 2

    def curve(mid: float, cupid: float = 0.0) -> np.ndarray:
        v = corner + (mid - corner) * bump - cupid * np.exp(-((np.abs(u) - 0.07) / 0.05) ** 2)
        return np.stack([u, v], 1)

    gap = 0.32 * open_ + 0.035 * max(a.smile, 0.0)  # broad smiles part the lips a little
    return {
        "upper_outer": curve(cy - 0.075, cupid=0.02),
        "upper_inner": curve(cy - 0.005),
        "lower_inner": curve(cy - 0.005 + gap),
        "lower_outer": curve(cy + 0.075 + gap * 1.05),
    }


def landmarks_for(attrs: FaceAttributes, size: int = 64) -> np.ndarray:
    """Ground-truth FFHQ points [4,2] (x, y) in pixel-index coordinates: eye_left, eye_right, mouth_left, mouth_right.

    Same layout as `tcve.landmarks.Face.points`, so the demo can skip detection.
    """
    pose = _Pose(size, attrs)
    eyes = pose.project(np.array([[-0.37, -0.06], [0.37, -0.06]]))
    m = _mouth_curves(attrs)["upper_inner"]
    mouth = pose.project(np.stack([m[0], m[-1]]))
    return np.concatenate([eyes, mouth], 0)


# ----------------------------------------------------------------------------- drawing

class _Canvas:
    """A supersampled RGB canvas that takes output-pixel coordinates."""

    def __init__(self, size: int, background: np.ndarray):
        self.size = size
        self.n = size * SUPERSAMPLE
        grad = np.linspace(1.08, 0.85, self.n)[:, None, None]
        self.img = np.clip(background[None, None, :] * grad, 0, 255).astype(np.uint8).repeat(self.n, 1)

    def pts(self, p: np.ndarray) -> np.ndarray:
        q = (np.asarray(p) + 0.5) * SUPERSAMPLE - 0.5
        return np.round(q * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)

    def px(self, length: float) -> int:
        return max(1, int(round(length * SUPERSAMPLE)))

    def poly(self, p: np.ndarray, color: np.ndarray) -> None:
        cv2.fillPoly(self.img, [self.pts(p)], _c(color), cv2.LINE_AA, _SHIFT)

    def line(self, p: np.ndarray, color: np.ndarray, width: float, closed: bool = False) -> None:
        cv2.polylines(self.img, [self.pts(p)], closed, _c(color), self.px(width), cv2.LINE_AA, _SHIFT)

    def blend_poly(self, p: np.ndarray, color: np.ndarray, alpha: float) -> None:
        layer = self.img.copy()
        cv2.fillPoly(layer, [self.pts(p)], _c(color), cv2.LINE_AA, _SHIFT)
        cv2.addWeighted(layer, alpha, self.img, 1 - alpha, 0, dst=self.img)

    def mask(self, p: np.ndarray) -> np.ndarray:
        m = np.zeros((self.n, self.n), np.uint8)
        cv2.fillPoly(m, [self.pts(p)], 255, cv2.LINE_AA, _SHIFT)
        return m

    def result(self) -> np.ndarray:
        return cv2.resize(self.img, (self.size, self.size), interpolation=cv2.INTER_AREA)


def _c(color: np.ndarray) -> tuple[int, int, int]:
    return tuple(int(x) for x in np.clip(np.round(color), 0, 255))


def _ellipse(c: np.ndarray, rx: float, ry: float, n: int = 24) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([c[0] + rx * np.cos(t), c[1] + ry * np.sin(t)], 1)


def _shade(canvas: _Canvas, pose: _Pose, mask: np.ndarray, a: FaceAttributes) -> None:
    """Soft lighting inside `mask`: darker towards the silhouette, light from the upper left."""
    ys, xs = np.nonzero(mask[:: SUPERSAMPLE, :: SUPERSAMPLE])
    if len(ys) == 0:
        return
    y0, y1 = ys.min() * SUPERSAMPLE, min(canvas.n, (ys.max() + 1) * SUPERSAMPLE)
    x0, x1 = xs.min() * SUPERSAMPLE, min(canvas.n, (xs.max() + 1) * SUPERSAMPLE)
    c = (pose.center + 0.5) * SUPERSAMPLE - 0.5
    r = pose.radius * SUPERSAMPLE
    dx = ((np.arange(x0, x1, dtype=np.float32) - c[0]) / r)[None, :]
    dy = ((np.arange(y0, y1, dtype=np.float32) - c[1]) / (r * _HEIGHT))[:, None]
    light = 1.04 - 0.22 * np.minimum(dx ** 2 + dy ** 2, 1.5) - 0.06 * (dx - 0.3 * math.sin(a.yaw))
    m = mask[y0:y1, x0:x1].astype(np.float32) * (1.0 / 255.0)
    factor = (1.0 + m * (light - 1.0))[..., None]
    crop = canvas.img[y0:y1, x0:x1]
    canvas.img[y0:y1, x0:x1] = np.clip(crop * factor, 0, 255).astype(np.uint8)


def render_face(attrs: FaceAttributes, size: int = 64, rng: np.random.Generator | None = None) -> np.ndarray:
    """Draw one face. Returns a frame [size, size, 3] uint8 RGB. `rng`, when given, adds faint sensor grain."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size}")
    a = attrs.clipped()
    col = face_colors(a)
    pose = _Pose(size, a)
    cv = _Canvas(size, col["background"])
    r = pose.radius

    # neck, then shoulders over its lower end
    neck = np.array([[-0.45, 0.6], [0.45, 0.6], [0.5, 2.2], [-0.5, 2.2]]) * r + pose.center + np.array([0, 0.3 * r])
    cv.poly(neck, col["skin_dark"])
    base = pose.center + np.array([0.0, 1.9 * r])
    shirt = _ellipse(base + np.array([0, 1.25 * r]), 2.1 * r, 1.3 * r, 40)
    cv.poly(shirt, col["shirt"])
    collar = base + r * np.array([[-0.62, 0.0], [0.0, 0.45], [0.62, 0.0], [0.0, 0.3]])
    cv.poly(collar, col["skin_dark"])

    # hair behind the head
    if a.hair_style == 1:
        t = np.linspace(np.pi * 0.9, np.pi * 2.1, 30)
        cap = pose.project(np.stack([1.22 * np.cos(t), 1.5 * np.sin(t) - 0.1], 1), surface=False)
        ends = pose.project(np.array([[1.25, 0.9], [1.05, 1.45], [-1.05, 1.45], [-1.25, 0.9]]), surface=False)
        cv.poly(np.concatenate([cap, ends], 0), col["hair"] * 0.85)
    if a.hair_style != 2:
        top = pose.outline(t=np.linspace(np.pi - 0.5, 2 * np.pi + 0.5, 40))
        cv.poly(_scaled(top, pose.center, 1.07, -0.05 * r, pose), col["hair"] * 0.9)
    outline = pose.outline()

    # ears (drawn before the head, which hides their inner part)
    for side in (-1, 1):
        ear = pose.project(np.array([[0.97 * side, 0.05]]), dz=-0.05)[0]
        cv.poly(_rotated(_ellipse(np.zeros(2), 0.16 * r, 0.26 * r), a.roll) + ear, col["skin_dark"])

    cv.poly(outline, col["skin"])
    _shade(cv, pose, cv.mask(outline), a)

    # hair on the forehead
    if a.hair_style != 2:
        cv.poly(_fringe(pose, a), col["hair"])
    else:
        cv.blend_poly(_fringe(pose, a, line=-0.66), col["hair"], 0.55)

    # expression lines: smile folds from the nose to the mouth corners, a frown crease between angry brows
    if a.smile > 0.2:
        fold = col["skin"] * (1 - 0.18 * a.smile)
        m = _mouth_curves(a)["upper_outer"]
        for side, corner in ((-1, m[0]), (1, m[-1])):
            cv.line(pose.project(np.array([[0.17 * side, 0.3], [corner[0] + 0.08 * side, corner[1] - 0.12],
                                           [corner[0] + 0.06 * side, corner[1] + 0.03]])), fold, 0.9 * size / 128)
    if a.brows < -0.3:
        crease = col["skin"] * (1 - 0.35 * -a.brows)
        for du in (-0.04, 0.04):
            cv.line(pose.project(np.array([[du, -0.3], [du * 0.7, -0.16]])), crease, 0.8 * size / 128)

    # age lines
    if a.age > 0.35:
        w = 0.25 + 0.5 * a.age
        lines_col = col["skin"] * (1 - 0.2 * a.age)
        for v in (-0.52, -0.44):
            cv.line(pose.project(np.stack([np.linspace(-0.3, 0.3, 9), v + 0.02 * np.cos(np.linspace(-1, 1, 9))], 1)),
                    lines_col, w * size / 128)
        for side in (-1, 1):
            cv.line(pose.project(np.array([[0.13 * side, 0.33], [0.25 * side, 0.46], [0.3 * side, 0.58]])), lines_col,
                    w * size / 128)

    # beard
    if a.beard:
        cv.poly(_beard(pose), col["beard"])

    # nose
    cv.line(pose.project(np.array([[0.04, -0.05], [0.06, 0.15], [0.09, 0.3]]), dz=np.array([0.05, 0.15, 0.22])),
            col["skin_dark"], 0.9 * size / 128)
    for side in (-1, 1):
        nostril = pose.project(np.array([[0.07 * side, 0.34]]), dz=0.18)[0]
        cv.poly(_ellipse(nostril, 0.045 * r, 0.025 * r), col["skin"] * 0.55)
    cv.poly(pose.project(_ellipse(np.array([0.0, 0.3]), 0.12, 0.05), dz=0.2), col["skin"] * 0.96)

    # eyes
    for side in (-1, 1):
        _draw_eye(cv, pose, a, side, col)

    # eyebrows
    for side in (-1, 1):
        cv.poly(pose.project(_brow(a, side)), col["brow"])

    # mouth
    _draw_mouth(cv, pose, a, col)

    # eyeglasses
    if a.eyeglasses:
        _draw_glasses(cv, pose, a)

    frame = cv.result()
    if rng is not None:
        frame = np.clip(frame + rng.normal(0, 2.0, frame.shape), 0, 255).astype(np.uint8)
    return frame


def _rotated(p: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return p @ np.array([[c, s], [-s, c]])


def _scaled(p: np.ndarray, center: np.ndarray, k: float, dy: float, pose: _Pose) -> np.ndarray:
    up = _rotated(np.array([[0.0, dy]]), pose.a.roll)[0]
    return center + up + k * (p - center)


def _fringe(pose: _Pose, a: FaceAttributes, line: float = -0.56) -> np.ndarray:
    """Hair covering the top of the head: a hairline with a side parting, closed over the top of the silhouette."""
    u = np.linspace(0.99, -0.99, 25)
    v = line + 0.16 * (np.abs(u) ** 2) - 0.07 * np.exp(-((u - 0.25) / 0.12) ** 2)
    hairline = pose.project(np.stack([u, v], 1))
    lift = math.asin(min(0.95, abs(v[0]) / _HEIGHT))
    arc = pose.outline(t=np.linspace(np.pi + lift, 2 * np.pi - lift, 25))
    return np.concatenate([hairline, arc], 0)


def _beard(pose: _Pose) -> np.ndarray:
    t = np.linspace(0.05, np.pi - 0.05, 25)
    outer = np.stack([0.97 * np.cos(t), 0.2 + 1.1 * np.sin(t) * (1.0 - 0.12 * np.sin(t))], 1)
    inner = np.array([[-0.75, 0.25], [-0.5, 0.45], [-0.22, 0.44], [0.0, 0.42], [0.22, 0.44], [0.5, 0.45], [0.75, 0.25]])
    return np.concatenate([pose.project(outer), pose.project(inner)], 0)


def _brow(a: FaceAttributes, side: int) -> np.ndarray:
    """Face-plane polygon of one eyebrow (inner end thick, outer end tapered)."""
    angry, surprised = max(-a.brows, 0.0), max(a.brows, 0.0)
    u = np.linspace(0.13, 0.64, 12)
    s = (u - 0.13) / 0.51
    arch = 0.05 + 0.05 * surprised
    v = -0.29 - 0.16 * surprised + 0.06 * angry - arch * np.sin(np.pi * s * 0.9)
    v = v + angry * (0.16 * (1 - s) - 0.08 * s)  # inner ends pulled down and in
    thick = (0.065 + 0.02 * angry) * (1 - 0.6 * s) + 0.02
    top = np.stack([u * side, v - thick / 2], 1)
    bottom = np.stack([u * side, v + thick / 2], 1)[::-1]
    return np.concatenate([top, bottom], 0)


def _draw_eye(cv: _Canvas, pose: _Pose, a: FaceAttributes, side: int, col: dict[str, np.ndarray]) -> None:
    c, hw, up, lo, openness = _eye_shape(a, side)
    upper, lower = _lid_curves(a, side)
    size = pose.size
    # socket shadow around the eye
    cv.blend_poly(pose.project(_ellipse(c + np.array([0, -0.02]), hw * 1.25, 0.12 + up * 0.5)), col["skin"] * 0.7, 0.35)
    if openness > 0.08:
        eye = pose.project(np.concatenate([upper, lower], 0))
        cv.poly(eye, np.array((245, 243, 240)))
        iris_c = c + np.array([0.07 * a.gaze_x, 0.01])
        for radius, color in ((0.078, col["iris"]), (0.036, np.array((15, 12, 12)))):
            disc = pose.project(_ellipse(iris_c, radius, radius, 20))
            hull = cv2.convexHull(eye.astype(np.float32))
            area, clipped = cv2.intersectConvexConvex(hull, disc.astype(np.float32))
            if area > 0 and clipped is not None:
                cv.poly(clipped.reshape(-1, 2), color)
        cv.line(pose.project(upper), np.array((35, 25, 25)), 1.3 * size / 128)
        cv.line(pose.project(lower), col["skin"] * 0.6, 0.6 * size / 128)
    else:
        # closed: the lid fills the eye and its edge curves down
        t = np.linspace(0, np.pi, 12)
        closed = np.stack([c[0] + hw * np.cos(t) * side, c[1] + 0.02 + 0.025 * np.sin(t)], 1)
        cv.line(pose.project(closed), np.array((35, 25, 25)), 1.3 * size / 128)


def _draw_mouth(cv: _Canvas, pose: _Pose, a: FaceAttributes, col: dict[str, np.ndarray]) -> None:
    m = _mouth_curves(a)
    size = pose.size
    cv.poly(pose.project(np.concatenate([m["upper_outer"], m["lower_outer"][::-1]])), col["lips"])
    if a.mouth_open > 0.03:
        cv.poly(pose.project(np.concatenate([m["upper_inner"], m["lower_inner"][::-1]])), np.array((60, 16, 20)))
        teeth_bottom = m["upper_inner"].copy()
        teeth_bottom[:, 1] = np.minimum(teeth_bottom[:, 1] + 0.07, m["lower_inner"][:, 1])
        cv.poly(pose.project(np.concatenate([m["upper_inner"], teeth_bottom[::-1]])), np.array((238, 234, 226)))
    else:
        cv.line(pose.project(m["upper_inner"]), col["lips"] * 0.5, 0.9 * size / 128)


def _draw_glasses(cv: _Canvas, pose: _Pose, a: FaceAttributes) -> None:
    size = pose.size
    frame_col = np.array((25, 22, 22))
    width = 1.6 * size / 128
    rims = []
    for side in (-1, 1):
        t = np.linspace(0, 2 * np.pi, 28, endpoint=False)
        c = np.array([0.37 * side, -0.04])
        # a rounded rectangle (superellipse)
        x = c[0] + 0.25 * np.sign(np.cos(t)) * np.abs(np.cos(t)) ** 0.6
        y = c[1] + 0.17 * np.sign(np.sin(t)) * np.abs(np.sin(t)) ** 0.6
        rim = pose.project(np.stack([x, y], 1), dz=0.1)
        cv.blend_poly(rim, np.array((200, 225, 240)), 0.22)
        rims.append(rim)
        cv.line(rim, frame_col, width, closed=True)
        temple = pose.project(np.array([[0.62 * side, -0.08], [0.97 * side, -0.02]]), dz=np.array([0.1, 0.0]))
        cv.line(temple, frame_col, width)
    bridge = pose.project(np.array([[-0.12, -0.1], [0.0, -0.14], [0.12, -0.1]]), dz=np.array([0.1, 0.16, 0.1]))
    cv.line(bridge, frame_col, width)


# ----------------------------------------------------------------------------- clips

def _smooth_noise(rng: np.random.Generator, t: np.ndarray, freqs: tuple[float, ...]) -> np.ndarray:
    """A sum of sinusoids with random phases and amplitudes, normalised to about [-1, 1]."""
    out = np.zeros_like(t)
    amps = rng.uniform(0.5, 1.0, len(freqs))
    for f, amp in zip(freqs, amps):
        out += amp * np.sin(2 * np.pi * f * rng.uniform(0.8, 1.2) * t + rng.uniform(0, 2 * np.pi))
    return out / amps.sum()


def animate_attributes(n_frames: int, fps: float, rng: np.random.Generator,
                       identity: FaceAttributes | None = None) -> list[FaceAttributes]:
    """Per-frame attributes of a talking head: fixed identity, smooth head motion, syllable-rate mouth, blinks."""
    base = identity or sample_attributes(rng)
    t = np.arange(n_frames) / fps
    yaw = base.yaw * 0.5 + 0.22 * _smooth_noise(rng, t, (0.15, 0.4))
    pitch = 0.08 * _smooth_noise(rng, t, (0.2, 0.55))
    roll = base.roll * 0.5 + 0.08 * _smooth_noise(rng, t, (0.12, 0.35))
    cx = base.center_x * 0.5 + 0.02 * _smooth_noise(rng, t, (0.1, 0.3))
    cy = base.center_y * 0.5 + 0.015 * _smooth_noise(rng, t, (0.15, 0.45))
    scale = base.scale + 0.03 * _smooth_noise(rng, t, (0.08,))
    # speech: syllables at ~3-5 Hz inside phrases that start and stop
    syll = np.clip(np.sin(2 * np.pi * rng.uniform(3.0, 5.0) * t + rng.uniform(0, 2 * np.pi)), 0, None)
    phrase = np.clip(1.5 * _smooth_noise(rng, t, (0.25, 0.6)) + 0.6, 0, 1)
    mouth = np.clip(0.75 * syll * phrase + 0.05, 0, 1)
    smile = np.clip(base.smile * 0.6 + 0.3 * _smooth_noise(rng, t, (0.07, 0.2)), -0.4, 1.0)
    brows = np.clip(0.2 * _smooth_noise(rng, t, (0.1, 0.3)) + 0.25 * phrase * syll, -1, 1)
    gaze = 0.4 * _smooth_noise(rng, t, (0.1, 0.25))
    # blinks: ~every 3 s, 0.2 s long, a smooth bump
    blink = np.zeros(n_frames)
    next_blink = rng.uniform(0.3, 2.5)
    end = t[-1] + 1.0 if n_frames else 0.0
    while next_blink < end:
        blink = np.maximum(blink, np.clip(1.0 - np.abs(t - next_blink) / 0.1, 0, 1) ** 0.7)
        next_blink += rng.uniform(1.8, 4.5)
    return [
        base.replace(yaw=yaw[i], pitch=pitch[i], roll=roll[i], center_x=cx[i], center_y=cy[i], scale=scale[i],
                     mouth_open=mouth[i], smile=smile[i], brows=brows[i], gaze_x=gaze[i], blink=blink[i]).clipped()
        for i in range(n_frames)
    ]


def animate_clip(n_frames: int, fps: float = 25.0, size: int = 64, rng: np.random.Generator | None = None,
                 identity: FaceAttributes | None = None) -> tuple[np.ndarray, list[FaceAttributes]]:
    """A talking-head clip: frames [T, size, size, 3] uint8 RGB and the attributes of every frame."""
    rng = rng if rng is not None else np.random.default_rng(0)
    attrs = animate_attributes(n_frames, fps, rng, identity)
    frames = np.stack([render_face(x, size) for x in attrs]) if attrs else np.zeros((0, size, size, 3), np.uint8)
    return frames, attrs


def render_grid(attrs: list[FaceAttributes], size: int = 64, columns: int = 8) -> np.ndarray:
    """Faces tiled row-major into one frame (for looking at the domain)."""
    tiles = [render_face(x, size) for x in attrs]
    rows = math.ceil(len(tiles) / columns)
    grid = np.full((rows * size, columns * size, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        grid[r * size:(r + 1) * size, c * size:(c + 1) * size] = tile
    return grid

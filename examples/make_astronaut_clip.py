"""Builds examples/astronaut.mp4: scikit-image's astronaut photo (NASA, public domain) moved along a smooth path.

3 s at 25 fps, 320x320, a slow pan with slight zoom and rotation, and a quiet 440 Hz tone as the audio track.
Run: python examples/make_astronaut_clip.py [out.mp4]
"""

from __future__ import annotations

import sys
from fractions import Fraction

import av
import cv2
import numpy as np
from skimage import data

SIZE, FPS, SECONDS, RATE = 320, 25, 3.0, 44100


def astronaut_frames(n: int = int(FPS * SECONDS), size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Frames [n,size,size,3] uint8 and the per-frame 2x3 affine maps (photo -> frame) that made them."""
    photo = data.astronaut()
    t = np.arange(n) / max(n - 1, 1)
    frames, mats = [], []
    for ti in t:
        # face centre of the photo is about (225, 125); keep it inside the frame while it drifts
        cx = 225 + 18 * np.sin(2 * np.pi * ti)
        cy = 150 + 12 * np.sin(np.pi * ti)
        scale = 1.05 + 0.12 * ti
        angle = 6.0 * np.sin(2 * np.pi * ti)
        m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
        m[:, 2] += np.array([size / 2 - cx, size / 2 - cy])
        frames.append(cv2.warpAffine(photo, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
        mats.append(m)
    return np.stack(frames), np.stack(mats)


def write_clip(path: str, frames: np.ndarray, fps: int = FPS, tone_hz: float = 440.0, crf: int = 22) -> None:
    with av.open(path, "w", format="mp4", options={"movflags": "+faststart"}) as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        v.options = {"crf": str(crf), "preset": "slow"}
        a = out.add_stream("aac", rate=RATE)
        a.layout = "mono"
        a.options = {"b": "32k"}
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            out.mux(v.encode(vf))
        out.mux(v.encode())
        n = int(len(frames) / fps * RATE)
        tone = (0.05 * np.sin(2 * np.pi * tone_hz * np.arange(n) / RATE)).astype(np.float32)
        for s in range(0, n, 1024):
            af = av.AudioFrame.from_ndarray(tone[None, s:s + 1024], format="fltp", layout="mono")
            af.sample_rate, af.pts, af.time_base = RATE, s, Fraction(1, RATE)
            out.mux(a.encode(af))
        out.mux(a.encode())


if __name__ == "__main__":
    frames, _ = astronaut_frames()
    write_clip(sys.argv[1] if len(sys.argv) > 1 else "examples/astronaut.mp4", frames)

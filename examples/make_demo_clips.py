"""Builds examples/demo_face_*.mp4: talking heads drawn by the demo pack's renderer (tcve.demo.faces).

Each clip: 3 s at 25 fps, 320x320, one procedural identity talking (smooth head pose, mouth and blinks, from
`animate_clip`) drawn at 256 px, padded to 320 px with its own background and drifting slowly in the frame (a
camera pan), with a quiet tone as its audio track. These are the clips the bundled demo models can really edit.
Run from the repository root: python examples/make_demo_clips.py
"""

from __future__ import annotations

import cv2
import numpy as np
from make_astronaut_clip import FPS, SECONDS, write_clip

from tcve.demo.faces import animate_clip

SIZE, FACE = 320, 256
CLIPS = {"demo_face_a.mp4": (1, 440.0), "demo_face_b.mp4": (14, 330.0)}  # file -> (seed, tone Hz); no glasses, no beard


def demo_frames(seed: int, n: int = int(FPS * SECONDS)) -> np.ndarray:
    faces, _ = animate_clip(n, float(FPS), size=FACE, rng=np.random.default_rng(seed))
    t = np.arange(n) / max(n - 1, 1)
    pad = (SIZE - FACE) // 2
    frames = []
    for face, ti in zip(faces, t):
        canvas = cv2.copyMakeBorder(face, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        m = np.float32([[1, 0, 12 * np.sin(2 * np.pi * ti)], [0, 1, 6 * np.sin(np.pi * ti)]])
        frames.append(cv2.warpAffine(canvas, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
    return np.stack(frames)


if __name__ == "__main__":
    for name, (seed, tone) in CLIPS.items():
        write_clip(f"examples/{name}", demo_frames(seed), tone_hz=tone)

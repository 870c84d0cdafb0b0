"""Face stage benchmark: ms/frame for landmarks, alignment and paste-back, round-trip PSNR and crop jitter.

Run: python bench/align.py [clip.mp4]   (default: examples/astronaut.mp4; CPU, 1 thread for OpenCV)
Jitter is measured twice: on the clip with the real detector, and on the astronaut photo moved along a smooth path
with 1 px of Gaussian landmark noise added per frame (where the true motion is known).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
from skimage import data
import numpy as np

from tcve.align import (AlignConfig, compute_transforms, crop_face, detect_and_track, paste_face, paste_mask, psnr,
                        quad_axes, quad_from_axes, quad_jitter, raw_transforms, stack_quads, track_faces)
from tcve.landmarks import Face, MediaPipeDetector
from tcve.video import iter_frames, probe


def _ms(fn, items) -> tuple[float, list]:
    out = []
    t0 = time.perf_counter()
    for item in items:
        out.append(fn(*item) if isinstance(item, tuple) else fn(item))
    return (time.perf_counter() - t0) * 1000 / max(len(items), 1), out


def main() -> None:
    cv2.setNumThreads(1)
    default = Path(__file__).resolve().parents[1] / "examples" / "astronaut.mp4"
    clip = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    info = probe(clip, limits=None)
    t0 = time.perf_counter()
    frames = list(iter_frames(clip))
    decode_ms = (time.perf_counter() - t0) * 1000 / len(frames)
    det = MediaPipeDetector()
    det(frames[0])  # warm-up (graph start)
    t0 = time.perf_counter()
    track = detect_and_track(frames, det)
    detect_ms = (time.perf_counter() - t0) * 1000 / len(frames)
    print(f"clip {clip.name}: {info.width}x{info.height}, {info.n_frames} frames at {float(info.fps):g} fps; "
          f"detected in {int(track.detected.sum())}/{track.n_frames}")
    print(f"{'step':<34}{'ms/frame':>10}")
    print(f"{'decode (PyAV, rgb24)':<34}{decode_ms:>10.1f}")
    print(f"{'landmarks (MediaPipe FaceMesh)':<34}{detect_ms:>10.1f}")
    rows = []
    for size in (256, 1024):
        cfg = AlignConfig(output_size=size)
        transforms = compute_transforms(track, cfg)
        align_ms, crops = _ms(lambda f, t, cfg=cfg: crop_face(f, t, cfg), list(zip(frames, transforms)))
        paste_ms, outs = _ms(lambda f, c, t, cfg=cfg: paste_face(f, c, t, config=cfg),
                             list(zip(frames, crops, transforms)))
        scores, exact = [], True
        for f, o, t in zip(frames, outs, transforms):
            region = paste_mask(t, cfg) > 0
            scores.append(psnr(o, f, region))
            exact &= bool(np.array_equal(o[~region], f[~region]))
        print(f"{f'align (crop {size})':<34}{align_ms:>10.1f}")
        print(f"{f'paste-back (crop {size})':<34}{paste_ms:>10.1f}")
        rows.append((size, min(scores), float(np.mean(scores)), exact))
    print(f"\n{'round trip (align -> paste)':<30}{'min PSNR dB':>12}{'mean PSNR dB':>14}{'outside exact':>15}")
    for size, lo, mean, exact in rows:
        print(f"{f'crop {size}':<30}{lo:>12.2f}{mean:>14.2f}{str(exact):>15}")

    cfg = AlignConfig(output_size=1024)
    print(f"\n{'quad jitter, px (mean |2nd diff|)':<40}{'raw':>8}{'smoothed':>10}{'ratio':>8}")
    raw = quad_jitter(stack_quads(raw_transforms(track, cfg)))
    smooth = quad_jitter(stack_quads(compute_transforms(track, cfg)))
    print(f"{'example clip, MediaPipe':<40}{raw:>8.3f}{smooth:>10.3f}{raw / max(smooth, 1e-9):>8.1f}")
    # synthetic: known smooth motion of the photo's points plus 1 px detector noise


    points = det(data.astronaut())[0].points
    n = 75
    t = np.arange(n) / (n - 1)
    mats = []
    for ti in t:
        m = cv2.getRotationMatrix2D((225.0, 125.0), 6.0 * np.sin(2 * np.pi * ti), 1.05 + 0.12 * ti)
        m[:, 2] += [30 * np.sin(2 * np.pi * ti), 20 * np.sin(np.pi * ti)]
        mats.append(m)
    mats = np.stack(mats)
    truth = np.einsum("tij,kj->tki", mats[:, :, :2], points) + mats[:, None, :, 2]
    noisy = truth + np.random.default_rng(0).normal(0, 1.0, truth.shape)
    synth = track_faces([[Face(p, (0, 0, 1, 1))] for p in noisy], (512, 512))
    raw_q, smooth_q = stack_quads(raw_transforms(synth, cfg)), stack_quads(compute_transforms(synth, cfg))
    true_q = quad_from_axes(*quad_axes(truth))
    raw, smooth, true = quad_jitter(raw_q), quad_jitter(smooth_q), quad_jitter(true_q)
    print(f"{f'smooth path + 1 px noise (true {true:.3f})':<40}{raw:>8.3f}{smooth:>10.3f}{raw / smooth:>8.1f}")
    print(f"{'  mean corner error vs truth, px':<40}{np.abs(raw_q - true_q).mean():>8.3f}"
          f"{np.abs(smooth_q - true_q).mean():>10.3f}")
    det.close()


if __name__ == "__main__":
    main()

"""Where the poor-reconstruction warning sits: inversion PSNR of the demo pack on its own clip and on a real face.

``python -m bench.reconstruction_psnr`` prints one row per clip (first 4 frames, Preview preset: e4e codes + 2 PTI
passes) with the PSNR of the inversion against the aligned input and whether the run warns
(``PipelineConfig.min_reconstruction_psnr``).
"""

from __future__ import annotations

from dataclasses import replace

from tcve.edit import EditSpec
from tcve.pipeline import prepare_clip
from tcve.service import Service

CLIPS = ("examples/demo_face_a.mp4", "examples/astronaut.mp4")


def main() -> None:
    service = Service("demo", device="cpu")
    spec = EditSpec("eyeglasses")
    print("| clip | inversion PSNR (dB) | warned |")
    print("|---|---:|---|")
    for clip in CLIPS:
        config = service.config_for("Preview", spec)
        config = replace(config, read=service.read_options(clip, max_frames=4))
        prepared = prepare_clip(clip, spec, service.models(), config)
        warned = any(m.startswith("Warning: poor reconstruction") for m in prepared.messages)
        print(f"| {clip} | {prepared.inversion.metrics.psnr:.1f} | {'yes' if warned else 'no'} |")


if __name__ == "__main__":
    main()

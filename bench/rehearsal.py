"""The FFHQ rehearsal: the real ffhq model set end to end on full-size random-weight checkpoints.

    python -m bench.rehearsal                                   # Service, 4 frames, 1 step per stage, five edits
    python -m bench.rehearsal --frames 8 --preset Preview --steps 0   # the preset's own settings (0: no override)
    python -m bench.rehearsal --gradio                          # also once through the Gradio API (gradio_client)
    python -m bench.rehearsal --from-crops --frames 150 --preset paper   # GPU machine: torch-only, from crops

Builds (or reuses, ``--root``) the rehearsal cache (``tcve.rehearsal``: every checkpoint the edits need, in the
published layout and file name, in a ``huggingface_hub`` cache and torch.hub's), points ``HF_HOME`` /
``HF_HUB_CACHE`` / ``TORCH_HOME`` / ``TCVE_CHECKPOINT_MANIFEST`` at it with ``HF_HUB_OFFLINE=1``, and runs
``Service("ffhq")`` on a real-face clip at 1024 px. Prints one row per edit and stage: seconds, peak RSS (sampled
from /proc every 50 ms) and, on a GPU, ``torch.cuda.max_memory_allocated``; per edit, the ZeroGPU duration the app
would request (``Service.estimate_seconds``) next to the measured GPU-side time. ``--from-crops`` (``bench/
rehearsal_crops.py``) skips video, landmarks, gradio, lpips and open_clip and runs inversion, edits and phases 1-3
on synthetic aligned crops with torch, torchvision, numpy, scipy, safetensors and huggingface_hub only.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = ROOT / "examples" / "astronaut.mp4"
# (catalogue edit, target text): one of each kind the app offers
EDIT_KINDS: tuple[tuple[str, str, str], ...] = (
    ("mapper", "angry", ""),
    ("direction", "smile", ""),
    ("nada", "sketch", ""),
    ("text", "text", "a face with a beard"),
    ("text style", "text style", "an oil painting"),
)
GPU_STAGES = ("invert", "edit", "consistency", "stitch")  # what runs inside the ZeroGPU window
GRADIO_EDIT = "angry"  # the edit the Gradio API leg runs
DEFAULT_ROOT = Path(os.environ.get("TCVE_REHEARSAL_DIR", Path(tempfile.gettempdir()) / "tcve-rehearsal"))


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB high-water mark


@dataclass
class StageMeter:
    """Per-stage peak RSS (sampled) and CUDA peak, keyed by the stage prefix of the progress messages."""

    interval: float = 0.05
    stage: str = "load"
    verbose: bool = True  # print each stage as it starts (long CPU runs otherwise look stuck)
    rss: dict[str, int] = field(default_factory=dict)
    cuda: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._note()
            self._stop.wait(self.interval)

    def _note(self) -> None:
        self.rss[self.stage] = max(self.rss.get(self.stage, 0), _rss_bytes())

    def enter(self, stage: str) -> None:
        if stage == self.stage:
            return
        self._note()
        if torch.cuda.is_available():
            self.cuda[self.stage] = max(self.cuda.get(self.stage, 0), torch.cuda.max_memory_allocated())
            torch.cuda.reset_peak_memory_stats()
        self.stage = stage
        self._note()
        if self.verbose and not stage.endswith("-done") and stage != "done":
            print(f"  {time.strftime('%H:%M:%S')} {stage} (RSS {_rss_bytes() / 2**30:.2f} GiB)", flush=True)

    def progress(self, fraction: float, message: str) -> None:
        self.enter(message.split(":", 1)[0].strip() if ":" in message else self.stage)

    @contextmanager
    def running(self) -> Iterator[StageMeter]:
        self._thread.start()
        try:
            yield self
        finally:
            self.enter("done")
            self._stop.set()
            self._thread.join()


@dataclass
class Row:
    edit: str
    stage: str
    seconds: float
    rss_gib: float
    cuda_gib: float | None = None
    note: str = ""


def _gib(n: int | None) -> float | None:
    return None if n is None else n / 2**30


def print_table(rows: Sequence[Row], title: str) -> None:
    print(f"\n{title}\n")
    print("| edit | stage | seconds | peak RSS GiB | peak CUDA GiB | note |")
    print("|---|---|---:|---:|---:|---|")
    for r in rows:
        cuda = f"{r.cuda_gib:.2f}" if r.cuda_gib is not None else "-"
        print(f"| {r.edit} | {r.stage} | {r.seconds:.1f} | {r.rss_gib:.2f} | {cuda} | {r.note} |")
    sys.stdout.flush()


def overrides_for(steps: int) -> dict[str, int] | None:
    """The SETTINGS overrides that give every stage ``steps`` steps (None: the preset's own settings)."""
    if steps <= 0:
        return None
    return {"pti_steps": steps, "phase1_epochs": steps, "phase2_epochs": steps, "pairs_per_step": 1,
            "stitch_steps": steps, "text_steps": steps, "nada_steps": steps}


def build_cache(root: Path, names: Sequence[str], log: Callable[[str], None] = print):
    from tcve import rehearsal

    t0 = time.perf_counter()
    cache = rehearsal.build(root, names, progress=log)
    log(f"rehearsal cache: {len(cache.files)} files, {cache.total_bytes / 2**30:.2f} GiB at {cache.root} "
        f"({'reused' if cache.seconds == 0 else 'written'} in {time.perf_counter() - t0:.1f} s)")
    return cache


def run_service(service, clip: Path, frames: int, steps: int, preset: str,
                kinds: Sequence[tuple[str, str, str]] = EDIT_KINDS,
                consistency_kinds: Sequence[str] | None = None) -> tuple[list[Row], dict[str, object]]:
    """Every edit kind through ``Service.run``; returns the table rows and the results by kind.

    ``consistency_kinds``: the kinds that also run phases 1-3 (None: all); the others stop after the direct edit
    (phase epochs and stitching steps 0), which keeps a reduced CPU run short while every stage still runs."""
    from tcve.edit import EditSpec

    rows: list[Row] = []
    results: dict[str, object] = {}
    meter = StageMeter()
    with meter.running():
        t = time.perf_counter()
        service.prepare(meter.progress)
        meter.enter("load")
        rows.append(Row("-", "load models", time.perf_counter() - t, _gib(meter.rss.get("load", 0)),
                        _gib(meter.cuda.get("load")) if torch.cuda.is_available() else None))
        for kind, name, text in kinds:
            spec = EditSpec(name, target_text=text)
            knobs = overrides_for(steps)
            if consistency_kinds is not None and kind not in consistency_kinds:
                knobs = {**(knobs or {}), "phase1_epochs": 0, "phase2_epochs": 0, "stitch_steps": 0}
            config = service.config_for(preset, spec, knobs)
            meter.rss.clear()
            meter.cuda.clear()
            result = service.run(clip, spec, preset=preset, max_frames=frames, config=config, progress=meter.progress)
            meter.enter("done")
            results[kind] = result
            gpu_seconds = sum(result.seconds.get(s, 0.0) for s in GPU_STAGES)
            for stage, seconds in result.seconds.items():
                rows.append(Row(name if not text else f"{name} '{text}'", stage, seconds,
                                _gib(meter.rss.get(stage, 0)),
                                _gib(meter.cuda.get(stage)) if torch.cuda.is_available() else None))
            estimate = service.estimate_seconds(preset, result.info.n_frames)
            rows.append(Row(name, "GPU-side total", gpu_seconds, _gib(max(meter.rss.values(), default=0)),
                            note=f"ZeroGPU duration requested: {estimate} s for {result.info.n_frames} frames"))
    return rows, results


def run_gradio(service, clip: Path, frames: int, steps: int, edit: str = GRADIO_EDIT) -> Row:
    """One edit through the app's Gradio API (Blocks on 127.0.0.1, gradio_client), closed afterwards."""
    from gradio_client import Client, handle_file

    import app  # the repository root is on sys.path under ``python -m bench.rehearsal``

    demo = app.build_demo(service)
    demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    try:
        client = Client(demo.local_url, verbose=False)
        knobs = overrides_for(steps) or {}
        t = time.perf_counter()
        # the edit's own default strength, given explicitly: left out, the API sends the page's initial slider value
        out = client.predict(video=handle_file(str(clip)), edit=edit, strength=service.strength(edit)[0],
                             max_frames=frames, api_name="/edit", advanced=bool(knobs), **knobs)
        seconds = time.perf_counter() - t
    finally:
        demo.close()
    status = out[-1] if isinstance(out, (list, tuple)) else out
    return Row(edit, "Gradio API /edit", seconds, _rss_bytes() / 2**30, note=str(status).splitlines()[0][:80])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="rehearsal cache folder (reused if present)")
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="a real-face clip")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--steps", type=int, default=1, help="steps / epochs per stage (0: the preset's own)")
    parser.add_argument("--preset", default="Preview",
                        help="Service preset ('Preview', 'Paper settings'); --from-crops: 'preview' or 'paper'")
    parser.add_argument("--edits", default=",".join(k for k, _, _ in EDIT_KINDS),
                        help="edit kinds to run: " + ", ".join(k for k, _, _ in EDIT_KINDS))
    parser.add_argument("--names", choices=("default", "ci", "all"), default="default",
                        help="which checkpoints to write (all: every mapper and style, ~6.5 GB)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--gradio", action="store_true", help="also run one edit through the Gradio API")
    parser.add_argument("--costs-out", type=Path, help="--from-crops: write the measured per-unit GPU costs here "
                        "(JSON for $TCVE_GPU_COSTS)")
    parser.add_argument("--from-crops", action="store_true",
                        help="torch-only run from synthetic aligned crops (no video, landmarks, gradio, lpips, "
                             "open_clip)")
    args = parser.parse_args(argv)
    if args.from_crops:
        from bench.rehearsal_crops import main as crops_main

        forwarded = ["--root", str(args.root), "--frames", str(args.frames), "--preset", args.preset,
                     "--device", args.device, "--edits", args.edits, "--steps", str(args.steps)]
        if args.costs_out is not None:
            forwarded += ["--costs-out", str(args.costs_out)]
        return crops_main(forwarded)

    from tcve import rehearsal

    names = {"default": rehearsal.DEFAULT_NAMES, "ci": rehearsal.CI_NAMES, "all": rehearsal.ALL_NAMES}[args.names]
    cache = build_cache(args.root, names)
    wanted = [k.strip() for k in args.edits.split(",") if k.strip()]
    kinds = [k for k in EDIT_KINDS if k[0] in wanted]
    with rehearsal.activated(cache):
        os.environ.setdefault("TCVE_CACHE_DIR", str(args.root / "stage-cache"))
        from tcve.service import Service

        service = Service("ffhq", device=args.device, workdir=args.root / "outputs")
        print(f"device {service.device}, clip {args.clip.name}, {args.frames} frames, preset {args.preset!r}, "
              f"steps {args.steps or 'preset'}")
        rows, _ = run_service(service, args.clip, args.frames, args.steps, args.preset, kinds)
        if args.gradio:
            try:
                rows.append(run_gradio(service, args.clip, args.frames, args.steps))
            except Exception as exc:  # noqa: BLE001 - the Service rows above are still worth printing
                rows.append(Row(GRADIO_EDIT, "Gradio API /edit", 0.0, _rss_bytes() / 2**30,
                                note=f"FAILED: {str(exc).splitlines()[0][:100]}"))
    print_table(rows, f"Rehearsal (ffhq, 1024 px, random weights), command: python -m bench.rehearsal "
                      f"{' '.join(argv if argv is not None else sys.argv[1:])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

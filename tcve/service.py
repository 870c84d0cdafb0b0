"""What the app and the CLI talk to: which networks are active, presets, input checks, a result cache.

``Service.from_env()`` picks the real FFHQ checkpoints when they are cached (or can be downloaded: online and
``TCVE_MODELS=ffhq``), and tiny built-in random networks otherwise, and says which in ``banner``. Networks are built
lazily on first use, once per service.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
import numpy as np
import torch

from . import checkpoints
from .align import AlignConfig, align_frames, compute_transforms, detect_and_track
from .edit import EDITS, EditLoaders, EditSpec, edit_availability
from .invert import InversionConfig, PTIConfig
from .pipeline import CancelFn, PipelineConfig, PipelineModels, PipelineResult, ProgressFn, edit_video
from .stitch import StitchConfig
from .video import ReadOptions, VideoLimits, iter_frames, probe

log = logging.getLogger(__name__)

MODEL_SETS = ("ffhq", "tiny")
FFHQ_REQUIRED = ("stylegan2-ffhq-1024", "e4e-ffhq", "lpips-alex-backbone", "raft-large-things")


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    max_frames: int | None  # frames kept from the (trimmed) clip
    config: PipelineConfig


def _preview_config() -> PipelineConfig:
    return PipelineConfig(
        inversion=InversionConfig(pti=PTIConfig(steps=2, batch_size=4)),
        stitch=StitchConfig(steps=10),
        consistency=None,
    )


PRESETS: dict[str, Preset] = {
    "Preview": Preset("Preview", "a short excerpt with light settings: seconds to minutes on a GPU", 24,
                      _preview_config()),
    "Paper settings": Preset("Paper settings", "the official settings (PTI 200 passes, 10 + 3 epochs, stitching 50 "
                             "steps): about ten minutes for 150 frames on one H100", None, PipelineConfig()),
}


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _file_digest(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Service:
    def __init__(self, models: str = "tiny", device: str = "auto", workdir: str | os.PathLike[str] | None = None,
                 max_cached_results: int = 8) -> None:
        if models not in MODEL_SETS:
            raise ValueError(f"models must be one of {MODEL_SETS}, got {models!r}")
        self.model_set = models
        self.device = resolve_device(device)
        self.workdir = Path(workdir) if workdir else Path(tempfile.gettempdir()) / "tcve-outputs"
        self._models: PipelineModels | None = None
        self._lock = threading.Lock()
        self._results: OrderedDict[str, PipelineResult] = OrderedDict()
        self._max_cached = max_cached_results

    # ---------------------------------------------------------------- which networks
    @classmethod
    def from_env(cls) -> Service:
        """``TCVE_MODELS`` = ffhq | tiny | auto (default): ffhq when its checkpoints are cached here."""
        choice = os.environ.get("TCVE_MODELS", "auto")
        if choice == "auto":
            choice = "ffhq" if all(checkpoints.is_cached(n) for n in FFHQ_REQUIRED) else "tiny"
        return cls(models=choice, device=os.environ.get("TCVE_DEVICE", "auto"))

    @property
    def banner(self) -> str:
        if self.model_set == "ffhq":
            return f"Models: FFHQ StyleGAN2 checkpoints from the Hub, on {self.device.type.upper()}."
        return ("Models: **tiny built-in random networks** (no checkpoints available here, e.g. offline). The whole "
                "pipeline runs, but the edits are noise; set up network access to use the FFHQ checkpoints.")

    def models(self) -> PipelineModels:
        with self._lock:
            if self._models is None:
                self._models = self._build_models()
            return self._models

    def _build_models(self) -> PipelineModels:
        from .landmarks import load_detector
        from .losses import SpatialLPIPS

        if self.model_set == "tiny":
            from .flow import DisFlow
            from .tiny import tiny_edit_loaders, tiny_encoder, tiny_generator

            generator = tiny_generator().to(self.device)
            return PipelineModels(
                generator=generator, encoder=tiny_encoder(generator).to(self.device),
                lpips=SpatialLPIPS("alex", backbone="random").to(self.device), flow=DisFlow("medium"),
                metric_lpips=SpatialLPIPS("alex", backbone="random", spatial=False).to(self.device),
                detector=load_detector("mediapipe"), edit_loaders=tiny_edit_loaders(generator),
                label="tiny random networks",
            )
        from .flow import load_flow_estimator
        from .models import load_encoder, load_generator

        generator = load_generator(checkpoints.fetch("stylegan2-ffhq-1024")).to(self.device)
        encoder = load_encoder(checkpoints.fetch("e4e-ffhq")).to(self.device)
        return PipelineModels(
            generator=generator, encoder=encoder, lpips=SpatialLPIPS("alex").to(self.device),
            flow=load_flow_estimator("raft-large", checkpoint="raft-large-things", device=self.device),
            detector=load_detector("auto"), metric_lpips=SpatialLPIPS("alex", spatial=False).to(self.device),
            edit_loaders=EditLoaders(), label="FFHQ checkpoints",
        )

    # ---------------------------------------------------------------- what the UI offers
    def edits(self, domain: str) -> list[tuple[str, bool, str]]:
        """(name, available, note or reason) for every catalogue edit of ``domain`` ('in' | 'out')."""
        if self.model_set == "tiny":
            return [(name, True, "tiny random networks") for name, e in EDITS.items() if e.domain == domain]
        found = edit_availability()
        rows = []
        for name, entry in EDITS.items():
            if entry.domain != domain:
                continue
            source = found.get(name)
            if source is None:
                reason = "checkpoint not available: " + ", ".join(entry.checkpoints)
                rows.append((name, False, reason))
            else:
                rows.append((name, True, source.note))
        return rows

    @staticmethod
    def edit_domain(name: str) -> str:
        return EDITS[name].domain

    # ---------------------------------------------------------------- runs
    def read_options(self, path: str | os.PathLike[str], start: float = 0.0, end: float | None = None,
                     max_frames: int | None = None) -> ReadOptions:
        """Trim to [start, end) seconds and cap the number of frames (by shortening the range, never by skipping)."""
        options = ReadOptions(start=max(0.0, float(start or 0.0)), end=float(end) if end else None)
        if max_frames:
            info = probe(path, options, limits=None)
            if info.n_frames > max_frames:
                options = replace(options, end=info.start + max_frames / float(info.fps))
        return options

    def preview_face(self, path: str | os.PathLike[str], options: ReadOptions = ReadOptions()) -> np.ndarray:
        """The aligned crop of the first frame, as the generator will see it (uint8 HWC)."""
        models = self.models()
        first = next(iter_frames(path, options))
        config = AlignConfig(output_size=int(models.generator.size))
        track = detect_and_track([first], models.detector, config)
        return next(align_frames([first], compute_transforms(track, config), config))

    def run(self, path: str | os.PathLike[str], spec: EditSpec, preset: str = "Preview", start: float = 0.0,
            end: float | None = None, max_frames: int | None = None, config: PipelineConfig | None = None,
            progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> PipelineResult:
        chosen = PRESETS[preset]
        config = config or chosen.config
        cap = min(x for x in (max_frames, chosen.max_frames, config.limits.max_frames) if x) if any(
            (max_frames, chosen.max_frames, config.limits.max_frames)) else None
        probe(path, ReadOptions(), limits=VideoLimits(max_frames=None, max_seconds=None,
                                                      max_side=config.limits.max_side))  # not a video -> clear error
        options = self.read_options(path, start, end, cap)
        config = replace(config, read=options)
        key = hashlib.sha256(json.dumps({
            "file": _file_digest(path), "spec": [spec.name, spec.strength, spec.target_text, spec.source_text],
            "config": repr(config), "models": self.model_set,
        }, sort_keys=True).encode()).hexdigest()[:16]
        cached = self._results.get(key)
        if cached is not None and cached.output.exists():
            self._results.move_to_end(key)
            if progress is not None:
                progress(1.0, "cached result")
            return cached
        result = edit_video(path, spec, self.models(), self.workdir / key, config, progress, cancel)
        self._results[key] = result
        while len(self._results) > self._max_cached:
            self._results.popitem(last=False)
        return result


def example_clips() -> list[Path]:
    root = Path(__file__).resolve().parents[1] / "examples"
    return sorted(p for p in root.glob("*.mp4"))

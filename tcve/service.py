"""What the app and the CLI talk to: which networks are active, presets, input checks, a result cache.

``Service.from_env()`` picks the real FFHQ checkpoints when they are cached or the Hub can be reached (they are then
fetched on first use), the bundled demo models otherwise (tiny random networks when the pack is missing), and says
which in ``banner``. Networks are built
lazily on first use, once per service (``prepare`` fetches the checkpoints first, reporting progress).

Presets ('Preview', 'Paper settings') resolve per edit domain and model set in ``config_for``, which also applies the
``SETTINGS`` overrides the app's advanced accordion and the CLI's ``--set`` expose. ``run`` says every cut it makes
(preset cap, frame cap, frame limit), writes each job into a folder of its own and caches the last results by input
file, edit and settings (older results' folders are deleted); ``measure`` computes the metrics of any video against a
reference (``python -m tcve metrics``).

A run has three parts so that only the middle one needs a GPU (one ``@spaces.GPU`` call on ZeroGPU, see ``tcve.ui``):
``plan`` (checks, settings, the GPU-time estimate; refuses a job that cannot fit a ZeroGPU call) and ``align`` (CPU:
checkpoints fetched, frames read, landmarks, crops), then ``edit_on_device`` (inversion .. metrics), then ``write``
(CPU: paste-back and encoding). ``tcve.gpu_costs`` holds the cost model behind the estimate.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import checkpoints
from .align import align_frames, compute_transforms, detect_and_track
from .consistency import ConsistencyConfig
from .cache import StageCache
from .edit import (EDITS, EditConfig, EditLoaders, EditSpec, NadaTrainConfig, TextEditConfig, UnknownEdit,
                   edit_availability, source_note)
from .errors import BadRequest, CheckpointUnavailable, EditUnavailable, NoFaceFound, TcveError
from .gpu_costs import COSTS_ENV, GpuCosts, GpuEstimate, estimate_gpu
from .invert import InversionConfig, PTIConfig
from .pipeline import (AlignedClip, CancelFn, EditedClip, PipelineConfig, PipelineModels, PipelineResult, ProgressFn,
                       align_clip, edit_aligned, repeatable, write_outputs)
from .stitch import StitchConfig
from .video import ReadOptions, VideoLimits, iter_frames, probe, read_video
from .zerogpu import ZeroGPULimits, on_zerogpu

log = logging.getLogger(__name__)

MODEL_SETS = ("ffhq", "demo", "tiny")
FREE_TEXT_EDITS = {"in": "text", "out": "text style"}  # catalogue names of the free-text edits
FFHQ_REQUIRED = ("stylegan2-ffhq-1024", "e4e-ffhq", "lpips-alex-backbone", "raft-large-things")


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    max_frames: int | None  # frames kept from the (trimmed) clip
    config: PipelineConfig
    # Consistency stage of a preset whose config leaves it to the edit's domain (consistency=None):
    # (phase-1, phase-2) epochs and pairs per step replacing the domain defaults; None keeps the defaults.
    consistency_epochs: tuple[int, int] | None = None
    pairs_per_step: int | None = None
    fast_pairs: int | None = None  # ConsistencyConfig.fast(pairs): pairs per step, bf16, masks at working size


def _preview_config() -> PipelineConfig:
    return PipelineConfig(
        inversion=InversionConfig(pti=PTIConfig(steps=2, batch_size=4)),
        edit=EditConfig(text=TextEditConfig(steps=20), nada=NadaTrainConfig(steps=30)),
        stitch=StitchConfig(steps=5),
        consistency=None,
        smoothing=None,  # the latent-smoothing baseline is a paper comparison, not needed for a preview
    )


PRESETS: dict[str, Preset] = {
    "Preview": Preset("Preview", "a short excerpt with light settings: seconds on a GPU, about a minute on a CPU "
                      "with the tiny models", 8, _preview_config(), consistency_epochs=(1, 1), pairs_per_step=4),
    "Fast": Preset("Fast", "the official settings with the speed options: 8 (anchor, frame) pairs per step, bf16 "
                   "and masks at working resolution (the same epochs, fewer steps)", None, PipelineConfig(),
                   fast_pairs=8),
    "Paper settings": Preset("Paper settings", "the official settings (PTI 200 passes, 10 + 3 epochs, stitching 50 "
                             "steps): minutes per clip on a GPU", None, PipelineConfig()),
}
# The one preset vocabulary of the app, the CLI (`edit`, `evaluate`) and the API; matched case-insensitively.
PRESET_ALIASES = {"preview": "Preview", "fast": "Fast", "paper": "Paper settings", "paper settings": "Paper settings"}


def resolve_preset(name: str | None) -> str:
    """The ``PRESETS`` key for ``name`` ('preview', 'Fast', 'paper', 'Paper settings', ...; None: Preview)."""
    key = " ".join(str(name or "preview").replace("_", " ").replace("-", " ").lower().split())
    if key not in PRESET_ALIASES:
        raise BadRequest(f"Unknown preset '{name}'. Presets: preview, fast, paper (case does not matter).")
    return PRESET_ALIASES[key]


def check_trim(start: float | None, end: float | None) -> None:
    """Trim times that make sense on their own (the clip's length is checked when it is read)."""
    if start is not None and start < 0:
        raise BadRequest(f"The trim start must be 0 s or later, got {start:g} s.")
    if end is not None and end <= (start or 0.0):
        raise BadRequest(f"The trim end ({end:g} s) must be after the trim start ({start or 0.0:g} s).")


@dataclass(frozen=True)
class Setting:
    """One 'advanced' knob: a main field of the config dataclasses, as an integer (0 turns a stage off)."""

    key: str
    label: str
    minimum: int
    maximum: int
    info: str


SETTINGS: tuple[Setting, ...] = (
    Setting("pti_steps", "PTI passes", 0, 400, "generator tuning passes over the clip (0: encoder codes only)"),
    Setting("phase1_epochs", "phase 1 epochs", 0, 20, "latent refinement (flow-warping loss); 0 skips it"),
    Setting("phase2_epochs", "phase 2 epochs", 0, 20, "generator tuning for consistency; 0 skips it"),
    Setting("pairs_per_step", "pairs per step", 1, 16, "(anchor, frame) pairs per optimiser step (1 = official)"),
    Setting("stitch_steps", "stitching steps", 0, 200, "boundary stitching tune per frame, in-domain only (0: off)"),
    Setting("text_steps", "free-text steps", 1, 500, "CLIP optimisation steps of an in-domain text edit"),
    Setting("nada_steps", "free-style steps", 1, 1000, "StyleGAN-NADA fine-tune steps of an out-of-domain text style"),
)


class JobTooLong(TcveError):
    """A job that cannot fit one ZeroGPU call; refused before any work."""


def check_fits(estimate: GpuEstimate, limits: ZeroGPULimits) -> None:
    """Raise ``JobTooLong`` (with the numbers and what would fit) when one ZeroGPU call cannot hold the run."""
    charged = estimate.seconds * limits.duration_factor
    if charged <= limits.max_call_seconds:
        return
    fixed = estimate.seconds - estimate.per_frame * estimate.frames
    fit = int((limits.max_call_seconds / limits.duration_factor - fixed) // max(estimate.per_frame, 1e-9))
    advice = (f"At most about {fit} frames fit with these settings: lower the frame cap or trim the clip"
              if fit >= 1 else "Even one frame does not fit with these settings")
    raise JobTooLong(
        f"This job is too long for one ZeroGPU call: {estimate.frames} frames need about {estimate.seconds} s of "
        f"GPU time ({estimate.describe()}; estimates), which ZeroGPU's default GPU counts as "
        f"{charged:.0f} s (x{limits.duration_factor:g}), over the {limits.max_call_seconds} s a call may request "
        f"here. {advice}, or use the Preview preset or lower advanced settings (PTI passes, epochs, stitching "
        f"steps). {limits.quota_note()}")


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face Hub can be looked up (False at once on offline machines: DNS fails fast)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        return False
    import socket

    previous = socket.getdefaulttimeout()
    try:
        socket.setdefaulttimeout(timeout)
        socket.getaddrinfo("huggingface.co", 443)
        return True
    except OSError:
        return False
    finally:
        socket.setdefaulttimeout(previous)


@dataclass(frozen=True)
class RunPlan:
    """One checked run: what ``align``, ``edit_on_device`` and ``write`` need. Plain values: it pickles."""

    path: str
    spec: EditSpec
    config: PipelineConfig  # read options (trim, cap) included
    key: str  # the result cache's key
    domain: str
    estimate: GpuEstimate
    cut: str = ""  # the frames the run leaves out, and why ('' when the clip fits)


class Service:
    """``device``: where the networks run ('auto': CUDA when available). On ZeroGPU (``zerogpu``; default: the
    platform's ``SPACES_ZERO_GPU``) CUDA is emulated outside GPU calls: the networks still go to ``cuda`` at
    start-up, as ZeroGPU expects, while landmarks stay on the CPU, and ``plan`` refuses runs that cannot fit one
    call (``limits``). ``tensor_device`` places the tensors elsewhere than ``device`` says (tests fake a CUDA
    machine with it on a CPU)."""

    def __init__(self, models: str = "tiny", device: str = "auto", workdir: str | os.PathLike[str] | None = None,
                 max_cached_results: int = 8, zerogpu: bool | None = None, limits: ZeroGPULimits | None = None,
                 tensor_device: str | None = None, costs: GpuCosts = GpuCosts()) -> None:
        if models not in MODEL_SETS:
            raise ValueError(f"models must be one of {MODEL_SETS}, got {models!r}")
        self.model_set = models
        self.device = resolve_device(device)
        self.zerogpu = on_zerogpu() if zerogpu is None else zerogpu
        self.limits = limits or ZeroGPULimits.from_env()
        self.costs = costs
        self._placement = torch.device(tensor_device) if tensor_device else self.device
        self.workdir = Path(workdir) if workdir else Path(tempfile.gettempdir()) / "tcve-outputs"
        self._models: PipelineModels | None = None
        self._lock = threading.Lock()
        # torch's RNG and deterministic flag are process-wide: two runs' seeded GPU parts at once would restore each
        # other's saved states out of order, so they take turns
        self._seeded = threading.Lock()
        self._results: OrderedDict[str, PipelineResult] = OrderedDict()
        self._max_cached = max_cached_results

    # ---------------------------------------------------------------- which networks
    @classmethod
    def from_env(cls) -> Service:
        """``TCVE_MODELS`` = ffhq | demo | tiny | auto (default): ffhq when its checkpoints are cached here or the Hub
        can be reached (they are then fetched on first use), else the bundled demo pack, else tiny.
        ``TCVE_GPU_COSTS``: a measured cost file (``GpuCosts.load``) that sizes the ZeroGPU duration instead of the
        built-in estimates."""
        choice = os.environ.get("TCVE_MODELS", "auto")
        if choice == "auto":
            choice = cls.default_model_set()
        costs_file = os.environ.get(COSTS_ENV)
        costs = GpuCosts.load(costs_file) if costs_file else GpuCosts()
        return cls(models=choice, device=os.environ.get("TCVE_DEVICE", "auto"), costs=costs)

    @staticmethod
    def default_model_set() -> str:
        """ffhq when its checkpoints are cached or the Hub answers, else demo when the pack is shipped, else tiny."""
        from .demo.models import demo_pack_available

        if all(checkpoints.is_cached(n) for n in FFHQ_REQUIRED) or hub_reachable():
            return "ffhq"
        return "demo" if demo_pack_available() else "tiny"

    @property
    def banner(self) -> str:
        if self.model_set == "ffhq":
            return f"Models: FFHQ StyleGAN2 checkpoints from the Hub, on {self.device.type.upper()}."
        if self.model_set == "demo":
            return ("Models: **bundled demo models** (a small StyleGAN2 trained on procedural cartoon faces; no FFHQ "
                    "checkpoints available here, e.g. offline). They edit the bundled demo clips for real; real "
                    "faces need the FFHQ checkpoints (network access).")
        return ("Models: **tiny built-in random networks** (no checkpoints available here, e.g. offline). The whole "
                "pipeline runs, but the edits are noise; set up network access to use the FFHQ checkpoints.")

    def models(self) -> PipelineModels:
        with self._lock:
            if self._models is None:
                with repeatable(0, self._placement):  # random weights (tiny set, random LPIPS backbone) are the same
                    self._models = self._build_models()  # in every process: runs repeat across processes
            return self._models

    @property
    def loaded(self) -> bool:
        """Whether the networks are built (on ZeroGPU: at start-up, see app.startup)."""
        return self._models is not None

    def landmark_detector(self) -> Any:
        """The FFHQ set's landmarks: face-alignment where CUDA is available, else MediaPipe. face-alignment builds
        its networks for the device it is given; on ZeroGPU the main process (where landmarks run, outside the GPU
        call) only emulates CUDA, so there the detector gets the CPU."""
        from .landmarks import load_detector

        return load_detector("auto", device="cpu") if self.zerogpu else load_detector("auto")

    def _build_models(self) -> PipelineModels:
        from .identity import identity_net_for
        from .landmarks import load_detector
        from .losses import SpatialLPIPS

        if self.model_set in ("demo", "tiny"):
            from .flow import DisFlow

            # Offline sets: no pretrained LPIPS backbone (a random one: losses and masks still work), DIS flow,
            # MediaPipe landmarks (its model ships in the wheel).
            offline = dict(lpips=SpatialLPIPS("alex", backbone="random").to(self._placement), flow=DisFlow("medium"),
                           metric_lpips=SpatialLPIPS("alex", backbone="random", spatial=False).to(self._placement),
                           detector=load_detector("mediapipe"),
                           identity=identity_net_for(self.model_set, self._placement))
            if self.model_set == "demo":
                from .demo.models import DEMO_FRAMING, load_demo_networks

                demo = load_demo_networks(self._placement)
                return PipelineModels(generator=demo.generator, encoder=demo.encoder, edit_loaders=demo.edit_loaders,
                                      label="bundled demo models", framing=DEMO_FRAMING, **offline)
            from .tiny import tiny_edit_loaders, tiny_encoder, tiny_generator

            generator = tiny_generator().to(self._placement)
            return PipelineModels(generator=generator, encoder=tiny_encoder(generator).to(self._placement),
                                  edit_loaders=tiny_edit_loaders(generator), label="tiny random networks", **offline)
        from .flow import load_flow_estimator
        from .models import load_encoder, load_generator

        detector = self.landmark_detector()

        generator = checkpoints.load("stylegan2-ffhq-1024", load_generator).to(self._placement)
        encoder = checkpoints.load("e4e-ffhq", load_encoder).to(self._placement)
        # ReStyle has no public Hub copy: used for out-of-domain edits when provided locally.
        encoder_out = (checkpoints.load("restyle-psp-ffhq", load_encoder).to(self._placement)
                       if checkpoints.is_cached("restyle-psp-ffhq") else None)
        return PipelineModels(
            generator=generator, encoder=encoder, lpips=SpatialLPIPS("alex").to(self._placement),
            flow=load_flow_estimator("raft-large", checkpoint="raft-large-things", device=self._placement),
            detector=detector, metric_lpips=SpatialLPIPS("alex", spatial=False).to(self._placement),
            edit_loaders=EditLoaders(), label="FFHQ checkpoints", encoder_out=encoder_out, cache=StageCache(),
            checkpoint_names=("stylegan2-ffhq-1024", "e4e-ffhq"), identity=identity_net_for("ffhq", self._placement),
        )

    # ---------------------------------------------------------------- what the UI offers
    def edits(self, domain: str) -> list[tuple[str, bool, str]]:
        """(name, available, note or reason) for every catalogue edit of ``domain`` ('in' | 'out')."""
        if self.model_set == "tiny":
            return [(name, True, "tiny random networks") for name, e in EDITS.items() if e.domain == domain]
        loaders = self._edit_loaders()
        found = edit_availability(is_available=loaders.is_available if loaders is not None else None)
        rows = []
        for name, entry in EDITS.items():
            if entry.domain != domain:
                continue
            source = found.get(name)
            if source is None:
                reason = ("not in the demo pack" if self.model_set == "demo" else
                          "checkpoint not available: " + ", ".join(entry.checkpoints))
                rows.append((name, False, reason))
            else:
                rows.append((name, True, source_note(source, loaders)))
        return rows

    def _edit_loaders(self) -> EditLoaders | None:
        """The edit networks of an offline model set, without building its models (None: the registry's)."""
        if self.model_set == "demo":
            from .demo.models import demo_edit_loaders

            return demo_edit_loaders()
        return None

    def _is_available(self) -> Callable[[str], bool] | None:
        """Which checkpoints this model set has (None: the registry's local files and caches)."""
        loaders = self._edit_loaders()
        return loaders.is_available if loaders is not None else None

    @staticmethod
    def edit_domain(name: str) -> str:
        return EDITS[name].domain

    @staticmethod
    def free_text_edit(domain: str) -> str:
        """The catalogue name of the free-text edit of ``domain`` ('in' | 'out')."""
        return FREE_TEXT_EDITS[domain]

    def strength(self, name: str) -> tuple[float, float, float]:
        """(default, minimum, maximum) strength of edit ``name`` with the source this service would use."""
        entry = EDITS[name]
        source = entry.sources[0]
        if self.model_set != "tiny":
            source = edit_availability(is_available=self._is_available()).get(name) or source
        lo, hi = source.strength_range
        return float(source.default_strength), float(lo), float(hi)

    def check_strength(self, name: str, strength: float | None) -> None:
        """A strength within the range of edit ``name`` (None: its default)."""
        if strength is None:
            return
        _, low, high = self.strength(name)
        if not low <= float(strength) <= high:
            raise BadRequest(f"Strength {float(strength):g} is outside the range of '{name}' ({low:g} to {high:g}).")

    def require_edit(self, name: str) -> None:
        """Fail before any work when this model set cannot run edit ``name``, listing the edits it offers.

        Decided for the offline sets (demo, tiny) and for ffhq when the Hub is off (``HF_HUB_OFFLINE``); online,
        a missing ffhq checkpoint is fetched on first use."""
        if name not in EDITS:
            raise UnknownEdit(f"Unknown edit '{name}'. See `python -m tcve list edits`.")
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
        if self.model_set == "ffhq" and not offline:
            return
        if self.model_set == "ffhq":  # the base networks first: without them no edit runs
            for required in FFHQ_REQUIRED:
                if not checkpoints.is_cached(required):
                    checkpoints.fetch(required)  # raises CheckpointUnavailable, saying how to provide the file
        rows = self.edits(EDITS[name].domain)
        reason = next((note for n, ok, note in rows if n == name and not ok), None)
        if reason is None:
            return
        offered = [n for n, ok, _ in rows if ok]
        kind = "edits" if EDITS[name].domain == "in" else "styles"
        raise EditUnavailable(f"'{name}' cannot run with the {self.model_set} models ({reason}). They offer these "
                              f"{kind}: {', '.join(offered) if offered else 'none'}.")

    # ---------------------------------------------------------------- runs
    def read_options(self, path: str | os.PathLike[str], start: float = 0.0, end: float | None = None,
                     max_frames: int | None = None, stride: int | None = None,
                     max_side: int | None = None) -> ReadOptions:
        """Trim to [start, end) seconds, keep every ``stride``-th frame, downscale to ``max_side`` and cap the number
        of frames (by shortening the range, never by skipping)."""
        options = ReadOptions(start=max(0.0, float(start or 0.0)), end=float(end) if end else None,
                              stride=max(1, int(stride or 1)), max_side=int(max_side) if max_side else None)
        if max_frames:
            info = probe(path, options, limits=None)
            if info.n_frames > max_frames:
                options = replace(options, end=info.start + max_frames / float(info.fps))
        return options

    @staticmethod
    def frame_cap(preset: str, max_frames: int | None, limits: VideoLimits) -> tuple[int | None, str]:
        """The frames a run keeps at most, and why (what the user can change)."""
        caps = [(max_frames, f"the frame cap you set ({max_frames})"),
                (PRESETS[preset].max_frames, f"the {preset} preset edits at most {PRESETS[preset].max_frames} "
                 "frames; choose 'Paper settings' or set a frame cap to edit more"),
                (limits.max_frames, f"the limit is {limits.max_frames} frames; trim (start/end) or keep every n-th "
                 "frame (stride) to edit another part")]
        caps = [(n, why) for n, why in caps if n]
        return min(caps, key=lambda c: c[0]) if caps else (None, "")

    def cut_message(self, path: str | os.PathLike[str], options: ReadOptions, cap: int | None, why: str) -> str:
        """'Only the first 8 of 50 frames ... are edited: why', or '' when the clip fits."""
        if not cap:
            return ""
        info = probe(path, options, limits=None)
        if info.n_frames <= cap:
            return ""
        return (f"Only the first {cap} of the {info.n_frames} frames are edited ({info.start:.2f}–"
                f"{info.start + cap / float(info.fps):.2f} s of {info.start:.2f}–{info.end:.2f} s): {why}.")

    def preview_face(self, path: str | os.PathLike[str], options: ReadOptions = ReadOptions()) -> np.ndarray:
        """The aligned crop of the first frame that shows a face, as the generator will see it (uint8 HWC).

        Clips often open on something else (a title, an empty room): frames are looked at in order until one has
        a face. Raises ``NoFaceFound`` when none has."""
        models = self.prepare()
        config = models.crop_config()
        seen = 0
        for frame in iter_frames(path, options):
            seen += 1
            try:
                track = detect_and_track([frame], models.detector, config)
            except NoFaceFound:
                continue
            return next(align_frames([frame], compute_transforms(track, config), config))
        raise NoFaceFound(f"No face was found in any of the {seen} frames. Use a clip where the face is visible and "
                          "roughly frontal.")

    def plan(self, path: str | os.PathLike[str], spec: EditSpec, preset: str = "Preview", start: float = 0.0,
             end: float | None = None, max_frames: int | None = None, config: PipelineConfig | None = None,
             progress: ProgressFn | None = None, *, stride: int | None = None,
             max_side: int | None = None) -> RunPlan:
        """Check a run and fix its settings, before any work: raises on a bad input or, on ZeroGPU, ``JobTooLong``.
        Builds the networks first (fetching the model set's checkpoints with ``progress``) if needed. Every cut
        (preset cap, frame cap, limit) is worded in ``RunPlan.cut``."""
        preset = resolve_preset(preset)
        if spec.name not in EDITS:
            raise UnknownEdit(f"Unknown edit '{spec.name}'. Available edits: {', '.join(EDITS)}.")
        check_trim(start, end)
        self.check_strength(spec.name, spec.strength)
        self.require_edit(spec.name)
        probe(path, ReadOptions(), limits=None)  # not a video -> a clear error before any model is loaded
        self.prepare(progress)
        config = config or self.config_for(preset, spec)
        cap, why = self.frame_cap(preset, max_frames, config.limits)
        full = self.read_options(path, start, end, None, stride, max_side)
        probe(path, full, limits=VideoLimits(max_frames=None, max_seconds=None,
                                             max_side=config.limits.max_side))  # too large -> clear error
        cut = self.cut_message(path, full, cap, why)
        options = self.read_options(path, start, end, cap, stride, max_side)
        config = replace(config, read=options)
        if self.zerogpu and config.consistency is not None and config.consistency.compile:
            # ZeroGPU does not support torch.compile (it offers ahead-of-time compilation instead): run eager
            config = replace(config, consistency=replace(config.consistency, compile=False))
        key = hashlib.sha256(json.dumps({
            "file": checkpoints.file_sha256(path), "spec": [spec.name, spec.strength, spec.target_text, spec.source_text],
            "config": repr(config), "models": self.model_set,
        }, sort_keys=True).encode()).hexdigest()[:16]
        domain = EDITS[spec.name].domain
        n_frames = probe(path, options, config.limits).n_frames  # over the clip limits: that error, now
        estimate = estimate_gpu(config, n_frames, int(self.models().generator.size), domain, EDITS[spec.name].kind,
                                self.costs)
        if self.zerogpu:
            check_fits(estimate, self.limits)
        return RunPlan(str(path), spec, config, key, domain, estimate, cut)

    def cached(self, plan: RunPlan) -> PipelineResult | None:
        """The result of an identical earlier run (labelled ``cached``), when its files still exist."""
        with self._lock:
            cached = self._results.get(plan.key)
            if cached is not None and cached.output.exists():
                self._results.move_to_end(plan.key)
                return replace(cached, cached=True)
        return None

    def align(self, plan: RunPlan, progress: ProgressFn | None = None,
              cancel: CancelFn | None = None) -> AlignedClip:
        """CPU part before the GPU work: the networks and the edit's checkpoints (fetched with progress), then the
        frames read, tracked and aligned."""
        models = self.prepare(progress)
        self.fetch_edit_checkpoints(plan.spec, progress)
        return align_clip(plan.path, models, plan.config, progress, cancel)

    def edit_on_device(self, plan: RunPlan, aligned: AlignedClip, progress: ProgressFn | None = None,
                       cancel: CancelFn | None = None) -> EditedClip:
        """All GPU work of a run (on ZeroGPU: the body of the ``@spaces.GPU`` call), seeded by ``config.seed``."""
        models = self.models()
        with self._seeded, repeatable(plan.config.seed, models.device, plan.config.deterministic):
            return edit_aligned(plan.path, aligned, plan.spec, models, plan.config, progress, cancel)

    def write(self, plan: RunPlan, aligned: AlignedClip, edited: EditedClip, progress: ProgressFn | None = None,
              cancel: CancelFn | None = None, output_dir: str | os.PathLike[str] | None = None) -> PipelineResult:
        """CPU part after the GPU work: paste-back and encoding.

        Outputs go to a fresh directory of their own under ``workdir`` (two runs never share one; kept while the
        result is in the bounded result cache, deleted when it drops out or the run fails), or to ``output_dir``
        when given (then nothing is cached and nothing else is written)."""
        if output_dir is not None:
            result = write_outputs(plan.path, aligned, edited, output_dir, plan.config, progress, cancel)
            result.messages[:0] = [plan.cut] if plan.cut else []
            return result
        self.workdir.mkdir(parents=True, exist_ok=True)
        job_dir = Path(tempfile.mkdtemp(prefix=f"{plan.key}-", dir=self.workdir))
        try:
            result = write_outputs(plan.path, aligned, edited, job_dir, plan.config, progress, cancel)
        except BaseException:
            shutil.rmtree(job_dir, ignore_errors=True)  # a failed or cancelled run leaves nothing behind
            raise
        result.messages[:0] = [plan.cut] if plan.cut else []
        with self._lock:
            twin = self._results.pop(plan.key, None)  # the same job run twice at once: keep one copy
            if twin is not None and twin.output.parent != job_dir:
                shutil.rmtree(twin.output.parent, ignore_errors=True)
            self._results[plan.key] = result
            while len(self._results) > self._max_cached:
                _, dropped = self._results.popitem(last=False)
                shutil.rmtree(dropped.output.parent, ignore_errors=True)
        return result

    def run(self, path: str | os.PathLike[str], spec: EditSpec, preset: str = "Preview", start: float = 0.0,
            end: float | None = None, max_frames: int | None = None, config: PipelineConfig | None = None,
            progress: ProgressFn | None = None, cancel: CancelFn | None = None, *, stride: int | None = None,
            max_side: int | None = None, output_dir: str | os.PathLike[str] | None = None) -> PipelineResult:
        """``plan``, then ``align``, ``edit_on_device`` and ``write`` in this process (or the cached result); every
        cut (preset cap, frame cap, limit, damaged tail) is said in ``result.messages``. ``output_dir``: see
        ``write``."""
        plan = self.plan(path, spec, preset, start, end, max_frames, config, progress, stride=stride,
                         max_side=max_side)
        cached = self.cached(plan) if output_dir is None else None
        if cached is not None:
            if progress is not None:
                progress(1.0, "cached result")
            return cached
        aligned = self.align(plan, progress, cancel)
        edited = self.edit_on_device(plan, aligned, progress, cancel)
        return self.write(plan, aligned, edited, progress, cancel, output_dir)

    # ---------------------------------------------------------------- settings the app and the CLI expose
    def settings(self, preset: str = "Preview", domain: str = "in") -> dict[str, int]:
        """The ``SETTINGS`` values preset ``preset`` uses for an edit of ``domain``."""
        preset = resolve_preset(preset)
        config = PRESETS[preset].config
        consistency = config.consistency or self._consistency(preset, domain, None, scale_factor=1)
        pti = config.inversion.pti
        return {
            "pti_steps": pti.steps if pti is not None and domain == "in" else 0,
            "phase1_epochs": consistency.phase1.epochs if config.run_consistency and consistency.run_phase1 else 0,
            "phase2_epochs": consistency.phase2.epochs if config.run_consistency and consistency.run_phase2 else 0,
            "pairs_per_step": consistency.pairs_per_step,
            "stitch_steps": config.stitch.steps if config.stitch is not None else 0,
            "text_steps": config.edit.text.steps,
            "nada_steps": config.edit.nada.steps,
        }

    @staticmethod
    def _consistency(preset: str, domain: str, edit: str | None, scale_factor: int) -> ConsistencyConfig:
        chosen = PRESETS[preset]
        if domain == "out":
            cfg = ConsistencyConfig.out_of_domain(scale_factor=scale_factor)
        else:
            cfg = ConsistencyConfig.in_domain(edit=edit, scale_factor=scale_factor)
        if chosen.consistency_epochs is not None:
            e1, e2 = chosen.consistency_epochs
            cfg = replace(cfg, phase1=replace(cfg.phase1, epochs=e1), phase2=replace(cfg.phase2, epochs=e2))
        if chosen.pairs_per_step is not None:
            cfg = replace(cfg, pairs_per_step=chosen.pairs_per_step)
        if chosen.fast_pairs is not None:
            cfg = cfg.fast(chosen.fast_pairs)
        return cfg

    def config_for(self, preset: str, spec: EditSpec, overrides: Mapping[str, Any] | None = None) -> PipelineConfig:
        """The full ``PipelineConfig`` of a run: the preset, resolved for the edit's domain and this model set, with
        ``overrides`` (keys of ``SETTINGS``) applied. Builds the networks (the working resolution depends on them)."""
        preset = resolve_preset(preset)
        config = PRESETS[preset].config
        domain = EDITS[spec.name].domain if spec.name in EDITS else "in"
        size = int(self.models().generator.size)
        if config.consistency is None:
            config = replace(config, consistency=self._consistency(preset, domain, spec.name, max(1, size // 256)))
        # Metrics are measured at most at the generator's own resolution (never upsampled: tiny models are 64 px).
        config = replace(config, metrics_size=min(config.metrics_size, size))
        if not overrides:
            return config
        unknown = set(overrides) - {s.key for s in SETTINGS}
        if unknown:
            raise TcveError(f"Unknown settings {sorted(unknown)}; known: {', '.join(s.key for s in SETTINGS)}.")
        values = {**self.settings(preset, domain), **{k: int(v) for k, v in overrides.items() if v is not None}}
        for s in SETTINGS:
            if not s.minimum <= values[s.key] <= s.maximum:
                raise TcveError(f"Setting '{s.label}' must be within {s.minimum}..{s.maximum}, got {values[s.key]}.")
        pti = config.inversion.pti or PTIConfig()
        steps = values["pti_steps"]
        inversion = replace(config.inversion, pti=replace(pti, steps=steps) if steps else None)
        cons = config.consistency
        cons = replace(cons, phase1=replace(cons.phase1, epochs=max(1, values["phase1_epochs"])),
                       phase2=replace(cons.phase2, epochs=max(1, values["phase2_epochs"])),
                       run_phase1=values["phase1_epochs"] > 0, run_phase2=values["phase2_epochs"] > 0,
                       pairs_per_step=values["pairs_per_step"])
        stitch = (replace(config.stitch or StitchConfig(), steps=values["stitch_steps"]) if values["stitch_steps"]
                  else None)
        edit = replace(config.edit, text=replace(config.edit.text, steps=values["text_steps"]),
                       nada=replace(config.edit.nada, steps=values["nada_steps"]))
        return replace(config, inversion=inversion, consistency=cons, stitch=stitch, edit=edit,
                       run_consistency=values["phase1_epochs"] > 0 or values["phase2_epochs"] > 0)

    def estimate_seconds(self, preset: str, n_frames: int | None = None, spec: EditSpec = EditSpec("angry")) -> int:
        """The ``@spaces.GPU`` duration ``plan`` would request for ``n_frames`` frames of edit ``spec`` with
        ``preset`` (default: the preset's frame cap, else 150), from the cost model (``GpuCosts``)."""
        preset = resolve_preset(preset)
        chosen = PRESETS[preset]
        frames = n_frames or chosen.max_frames or 150
        if chosen.max_frames:
            frames = min(frames, chosen.max_frames)
        entry = EDITS[spec.name]
        return estimate_gpu(self.config_for(preset, spec), frames, int(self.models().generator.size), entry.domain,
                            entry.kind, self.costs).seconds

    # ---------------------------------------------------------------- networks, with progress on first use
    def prepare(self, progress: ProgressFn | None = None) -> PipelineModels:
        """The networks, fetching the checkpoints first (with progress) when this service has not built them yet.

        Raises ``CheckpointUnavailable`` with how to provide a file when one can be neither found nor downloaded."""
        if self._models is None and self.model_set == "ffhq":
            for i, name in enumerate(FFHQ_REQUIRED):
                if progress is not None:
                    state = "cached" if checkpoints.is_cached(name) else "downloading"
                    progress(0.0, f"checkpoints: {name} ({state}, {i + 1}/{len(FFHQ_REQUIRED)})")
                checkpoints.fetch(name)
        if self._models is None and progress is not None:
            progress(0.0, f"loading models ({self.model_set})")
        return self.models()

    def fetch_edit_checkpoints(self, spec: EditSpec, progress: ProgressFn | None = None) -> None:
        """Download what edit ``spec`` needs (FFHQ set) now, with progress, so that no download happens inside the
        GPU call: its first source that is cached or can be fetched (the edit itself picks the same one)."""
        if self.model_set != "ffhq" or spec.name not in EDITS:
            return
        for name in (s.checkpoint for s in EDITS[spec.name].sources):  # free text: CLIP
            if name not in checkpoints.REGISTRY:
                continue
            if progress is not None:
                state = "cached" if checkpoints.is_cached(name) else "downloading"
                progress(0.0, f"checkpoints: {name} ({state})")
            try:
                checkpoints.fetch(name)
                return
            except CheckpointUnavailable:
                continue  # the next source of the edit may be available; the edit says so if none is

    # ---------------------------------------------------------------- what the Compare view shows
    @staticmethod
    def xt_image(result: PipelineResult, name: str, min_height: int = 96) -> np.ndarray | None:
        """The x-t scanline image of output ``name``, rows repeated so that short clips stay visible (uint8 HWC)."""
        xt = result.xt.get(name)
        if xt is None:
            return None
        repeat = max(1, -(-min_height // max(1, xt.shape[0])))
        return np.repeat(xt, repeat, axis=0)

    def measure(self, video: str | os.PathLike[str], reference: str | os.PathLike[str],
                direct: str | os.PathLike[str] | None = None, size: int = 256) -> dict[str, float]:
        """E_warp of ``video`` with flows of ``reference`` (the input clip), LPIPS to ``direct`` (or the reference),
        and, where the model set has an identity network, TL-ID / TG-ID / ID-sim against the reference.

        Whole frames, resized to ``size`` x ``size`` (identity scores assume aligned face crops, as the pipeline's
        are); the videos must have the same number of frames.
        """
        from .metrics import frames_to_images, lpips_fidelity, warping_error

        models = self.models()

        def load(path: str | os.PathLike[str]) -> torch.Tensor:
            frames, _ = read_video(path, limits=None)
            images = frames_to_images(frames)
            return torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                                                   antialias=True).to(self._placement)

        out, ref = load(video), load(reference)
        if out.shape[0] != ref.shape[0]:
            raise TcveError(f"'{Path(video).name}' has {out.shape[0]} frames but the reference has {ref.shape[0]}.")
        if out.shape[0] < 2:
            raise TcveError("The warping error needs at least two frames.")
        with torch.no_grad():
            werr = warping_error(out, ref, models.flow)
            other = load(direct) if direct is not None else ref
            if other.shape[0] != out.shape[0]:
                raise TcveError(f"'{Path(direct or reference).name}' has {other.shape[0]} frames, expected "
                                f"{out.shape[0]}.")
            fid = lpips_fidelity(out, other, models.metric_lpips or models.lpips)
        key = "lpips_to_direct" if direct is not None else "lpips_to_reference"
        result: dict[str, Any] = {"frames": int(out.shape[0]), "size": size, "warping_error": float(werr.mean),
                                  key: float(fid.mean)}
        if models.identity is not None:  # TL-ID / TG-ID / ID-sim of the video against the reference (the source)
            from .identity import identity_metrics

            result.update(identity_metrics(models.identity, out, ref).as_dict())
        return result


def example_clips(model_set: str | None = None) -> list[Path]:
    """The bundled clips; for the demo model set its own (demo-domain) clips come first."""
    root = Path(__file__).resolve().parents[1] / "examples"
    clips = sorted(root.glob("*.mp4"))
    if model_set == "demo":
        clips.sort(key=lambda p: not p.stem.startswith("demo_"))
    return clips

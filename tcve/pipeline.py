"""The whole edit of one clip: read → track, align → invert → direct edit → consistency → stitch → paste → write.

``edit_video`` takes its networks as a ``PipelineModels`` (real checkpoints, the demo pack or tiny random models:
see ``tcve.service``) and its settings as one ``PipelineConfig``, reports progress as ``progress(fraction, message)``
and stops when ``cancel()`` turns true. Full-resolution frames are streamed from the file twice (landmarks, then
crops) and once more while the three output videos are written side by side; only the aligned crops are held.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .align import (AlignConfig, AlignTransform, align_frames, compute_transforms, detect_and_track, paste_face,
                    visible_runs)
from .cache import StageCache, hash_frames
from .consistency import ConsistencyConfig, run_consistency
from .edit import EDITS, EditConfig, EditLoaders, EditResult, EditSpec, apply_edit
from .errors import Cancelled
from .flow import FlowEstimator
from .identity import embed, identity_scores
from .invert import OUT_OF_DOMAIN, Inversion, InversionConfig, invert_video, render
from .landmarks import LandmarkDetector
from .metrics import (consecutive_flows, frames_to_images, images_to_frames, lpips_fidelity, resize_square,
                      warping_error_from_flows, xt_slice)
from .smoothing import SmoothingConfig, smooth_latents
from .stitch import StitchConfig, paste_alphas, stitch_tune
from .video import AudioSource, ReadOptions, VideoInfo, VideoLimits, VideoWriter, iter_frames, probe, side_by_side

log = logging.getLogger(__name__)

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]


@dataclass(frozen=True)
class PipelineConfig:
    """Everything a run needs besides its networks. Stage settings keep their own defaults (the paper's)."""

    limits: VideoLimits = VideoLimits()
    read: ReadOptions = ReadOptions()
    align: AlignConfig = AlignConfig()  # output_size is replaced by the generator's resolution
    inversion: InversionConfig = InversionConfig()
    edit: EditConfig = EditConfig()
    consistency: ConsistencyConfig | None = None  # None: ConsistencyConfig.in_domain()/out_of_domain() by edit kind
    run_consistency: bool = True
    stitch: StitchConfig | None = StitchConfig()  # phase 3 (in-domain only); None: off
    smoothing: SmoothingConfig | None = SmoothingConfig()  # the latent-smoothing baseline; None: not computed
    metrics_size: int = 256  # E_warp / LPIPS are computed on aligned crops resized to this side
    side_by_side_height: int = 512
    write_smoothing_video: bool = False
    # Where the face is gone (AlignConfig.lost_after), frames pass through unedited; the edited face fades in and
    # out over this many frames at the borders of those gaps instead of popping (0: hard cut).
    crossfade_frames: int = 2
    # Below this PSNR (dB) of the inversion against the aligned input, the face is taken to be outside the models'
    # domain (the demo pack renders a real face as a cartoon: 12 dB, against 25 dB on its own clip; see
    # bench/reconstruction_psnr.py), and the user is told so plainly. None: never warn.
    min_reconstruction_psnr: float | None = 18.0
    # Repeatable runs: every random draw of a run comes from this seed (the caller's RNG state is restored after),
    # and PyTorch's deterministic algorithms are used where it has them (warn_only: ops without one still run).
    seed: int = 0
    deterministic: bool = True


@dataclass
class PipelineModels:
    """The networks of a run. ``label`` says which set is active (shown in the UI)."""

    generator: nn.Module
    encoder: nn.Module  # in-domain pivots (e4e)
    lpips: nn.Module  # spatial LPIPS (tcve.losses.SpatialLPIPS)
    flow: FlowEstimator
    detector: LandmarkDetector
    edit_loaders: EditLoaders = field(default_factory=EditLoaders)
    metric_lpips: nn.Module | None = None  # non-spatial LPIPS for the fidelity metric (default: mean of ``lpips``)
    label: str = ""
    encoder_out: nn.Module | None = None  # out-of-domain inversion (ReStyle-pSp, as the paper); None: ``encoder``
    cache: StageCache | None = None  # inversions by aligned-clip content + settings; None: no caching
    checkpoint_names: tuple[str, ...] = ()  # what the networks were loaded from (part of the cache key)
    framing: tuple[float, float] = (1.0, 0.0)  # (AlignConfig.quad_scale, quad_shift) of the generator's crops
    identity: nn.Module | None = None  # face embedding for TL-ID / TG-ID / ID-sim (tcve.identity); None: not measured

    @property
    def device(self) -> torch.device:
        return next(self.generator.parameters()).device

    def crop_config(self, base: AlignConfig = AlignConfig()) -> AlignConfig:
        """``base`` with the generator's crop: its resolution and framing."""
        return replace(base, output_size=int(getattr(self.generator, "size")), quad_scale=self.framing[0],
                       quad_shift=self.framing[1])


@dataclass
class PipelineResult:
    output: Path  # the consistent edit, full frame, with the input's audio
    direct: Path  # the per-frame (direct) edit, full frame
    side_by_side: Path  # input | direct | consistent
    smoothing: Path | None
    metrics: dict[str, Any]
    curves: dict[str, list[float]]  # per-pair warping error of each output
    xt: dict[str, np.ndarray]  # x-t scanline images (uint8 HWC) of each output's aligned crops
    info: VideoInfo
    messages: list[str]
    seconds: dict[str, float]
    edit_note: str = ""
    masks: list[np.ndarray] | None = None  # paste alphas of ``final`` (phase 3: the dilated face mask)
    cached: bool = False  # served from the service's result cache (the stage times are the first run's)

    def summary(self) -> dict[str, Any]:
        """JSON-ready metrics and facts about the run."""
        return {
            "output": str(self.output), "direct": str(self.direct), "side_by_side": str(self.side_by_side),
            "frames": self.info.n_frames, "fps": float(self.info.fps), "metrics": self.metrics,
            "curves": self.curves, "messages": self.messages, "seconds": self.seconds,
        }


class _Stages:
    """Maps each stage's own 0..1 progress onto the run's, and checks for cancellation between reports."""

    # GPU work (invert .. metrics) sits between the CPU-only reading/aligning and writing, so that a caller can run
    # it alone in a GPU call (ZeroGPU): ``align_clip`` | ``edit_aligned`` | ``write_outputs``.
    WEIGHTS = (("read", 0.04), ("align", 0.06), ("invert", 0.25), ("edit", 0.1), ("consistency", 0.35),
               ("stitch", 0.1), ("metrics", 0.05), ("write", 0.05))

    def __init__(self, progress: ProgressFn | None, cancel: CancelFn | None) -> None:
        self._progress, self._cancel = progress, cancel
        self._start: dict[str, float] = {}
        acc = 0.0
        for name, weight in self.WEIGHTS:
            self._start[name] = acc
            acc += weight
        self._weight = dict(self.WEIGHTS)
        self.seconds: dict[str, float] = {}
        self._t = time.perf_counter()

    def check(self) -> None:
        if self._cancel is not None and self._cancel():
            raise Cancelled("Cancelled.")

    def sub(self, stage: str) -> ProgressFn:
        start, weight = self._start[stage], self._weight[stage]

        def report(fraction: float, message: str) -> None:
            self.check()
            if self._progress is not None:
                self._progress(min(1.0, start + weight * max(0.0, min(1.0, fraction))), f"{stage}: {message}")

        return report

    def done(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = round(now - self._t, 3)
        self._t = now
        self.sub(stage)(1.0, "done")


# Each stage's share of the progress bar, in order (the app's ETA measures each stage's own rate against it).
STAGE_WEIGHTS: tuple[tuple[str, float], ...] = _Stages.WEIGHTS


def _to_images(crops: list[np.ndarray], device: torch.device) -> torch.Tensor:
    return frames_to_images(np.stack(crops)).to(device)


def consistency_config_for(config: PipelineConfig, domain: str, edit_name: str, size: int) -> ConsistencyConfig:
    if config.consistency is not None:
        return config.consistency
    # The official working resolution is 256 (1024 / 4); smaller generators work at their own size.
    scale = max(1, size // 256)
    if domain == "out":
        return ConsistencyConfig.out_of_domain(scale_factor=scale)
    return ConsistencyConfig.in_domain(edit=edit_name, scale_factor=scale)


def _metrics(config: PipelineConfig, models: PipelineModels, inputs: torch.Tensor,
             outputs: dict[str, torch.Tensor], report: ProgressFn) -> tuple[dict[str, Any], dict[str, list[float]],
                                                                            dict[str, np.ndarray]]:
    size = config.metrics_size
    reference = resize_square(inputs, size)
    metrics: dict[str, Any] = {"metrics_size": size}
    curves: dict[str, list[float]] = {}
    xt: dict[str, np.ndarray] = {}
    if reference.shape[0] < 2:
        return metrics, curves, xt
    flows = consecutive_flows(reference, models.flow)  # of the input, once for every output
    for i, (name, video) in enumerate(outputs.items()):
        video = resize_square(video, size)
        with torch.no_grad():
            werr = warping_error_from_flows(video, *flows)
        metrics[f"warping_error_{name}"] = float(werr.mean)
        curves[name] = [float(v) for v in werr.per_pair]
        xt[name] = xt_slice(video.detach().cpu())
        report((i + 1) / (len(outputs) + 1), f"warping error of {name}")
    if "direct" in outputs:
        scorer = models.metric_lpips or models.lpips
        for name, video in outputs.items():
            if name == "direct":
                continue
            with torch.no_grad():
                fid = lpips_fidelity(resize_square(video, size), resize_square(outputs["direct"], size), scorer)
            metrics[f"lpips_to_direct_{name}"] = float(fid.mean)
    if models.identity is not None:  # STIT's identity metrics of every output against the input crops
        source = embed(models.identity, inputs)
        for name, video in outputs.items():
            if name != "input":
                scores = identity_scores(embed(models.identity, video.detach()), source)
                metrics.update({f"{key}_{name}": value for key, value in scores.as_dict().items()
                                if key != "identity_network"})
        metrics["identity_network"] = getattr(models.identity, "network_name", type(models.identity).__name__)
    return metrics, curves, xt


@dataclass
class PreparedClip:
    """A clip up to its direct edit: what every output (and every evaluated method) starts from."""

    info: VideoInfo
    align: AlignConfig  # with output_size = the generator's resolution
    transforms: list[AlignTransform]  # per-frame crop transforms (for pasting back)
    inputs: torch.Tensor  # aligned input crops [T,3,S,S] in [-1,1]
    domain: str  # "in" | "out"
    inversion: Inversion
    edit: EditResult
    messages: list[str]
    # [T] bool over the clip's frames: the face is in view. ``inputs``, ``transforms`` and every edit hold the
    # visible frames only, in order: one latent path with gaps (see ``edit_video``). None: every frame.
    visible: np.ndarray | None = None


def _frame_spans(runs: list[tuple[int, int]], fps: float, start: float) -> str:
    """'6–11 (0.20–0.44 s), 30 (1.16 s)': frame numbers from 1 as the user counts them, and times in the clip."""
    parts = []
    for a, b in runs:
        frames = f"{a + 1}" if b - a == 1 else f"{a + 1}–{b}"
        times = (f"{start + a / fps:.2f} s" if b - a == 1 else
                 f"{start + a / fps:.2f}–{start + (b - 1) / fps:.2f} s")
        parts.append(f"{frames} ({times})")
    return ", ".join(parts)


def _select(frames: Iterator[np.ndarray], mask: np.ndarray) -> Iterator[np.ndarray]:
    return (frame for frame, keep in zip(frames, mask) if keep)


def fade_weights(visible: np.ndarray, frames: int) -> np.ndarray:
    """[T] weight of the edited face per frame: 0 where the face is gone, ramping up to 1 over ``frames`` frames
    next to each gap (the clip's own ends are no gaps), 1 elsewhere."""
    visible = np.asarray(visible, bool)
    weights = visible.astype(np.float64)
    gone = np.flatnonzero(~visible)
    if frames <= 0 or not len(gone):
        return weights
    for t in np.flatnonzero(visible):
        distance = int(np.abs(gone - t).min())  # 1 next to a gap
        weights[t] = min(1.0, distance / (frames + 1))
    return weights


def _paste_segments(frames: Iterator[np.ndarray], crops: np.ndarray, transforms: list[AlignTransform],
                    weights: np.ndarray, config: AlignConfig, masks: list[np.ndarray] | None = None,
                    soften: bool = True) -> Iterator[np.ndarray]:
    """Full frames with the edited crops of the visible frames pasted back (through ``masks`` when given), faded by
    ``weights``; frames without the face are yielded as they are (bit for bit)."""
    j = 0
    for frame, weight in zip(frames, weights):
        if weight <= 0:
            yield frame
            continue
        pasted = paste_face(frame, crops[j], transforms[j], None if masks is None else masks[j], config, soften)
        j += 1
        if weight < 1:
            pasted = np.rint(weight * pasted.astype(np.float32) + (1 - weight) * frame).astype(np.uint8)
        yield pasted


def reconstruction_warning(inversion: Inversion, threshold: float | None, label: str = "") -> str:
    """A plain warning when the inversion reproduces the input poorly (face outside the models' domain), else ''."""
    if threshold is None or inversion.metrics is None or not inversion.metrics.psnr < threshold:
        return ""
    models = f"the {label}" if label else "these models"
    return (f"Warning: poor reconstruction (PSNR {inversion.metrics.psnr:.1f} dB against the aligned input, below "
            f"{threshold:g} dB). This face looks outside the domain of {models}, so the result will not look like "
            "the person. For real faces use the FFHQ models (--models ffhq, or TCVE_MODELS=ffhq for the app).")


@dataclass
class AlignedClip:
    """A clip read, tracked and aligned (CPU work only; plain arrays, so it pickles into a GPU worker)."""

    info: VideoInfo
    align: AlignConfig  # with output_size = the generator's resolution
    transforms: list[AlignTransform]
    crops: np.ndarray  # aligned crops [T,S,S,3] uint8
    messages: list[str]
    seconds: dict[str, float] = field(default_factory=dict)
    # [T] bool over the clip's frames: the face is in view; ``transforms`` and ``crops`` hold the visible frames
    # only, in order. None: every frame.
    visible: np.ndarray | None = None


def align_clip(input_path: str | Path, models: PipelineModels, config: PipelineConfig = PipelineConfig(),
               progress: ProgressFn | None = None, cancel: CancelFn | None = None,
               stages: _Stages | None = None) -> AlignedClip:
    """Read (probe: limits, fps, audio; frames are streamed), track the main face and align it. No GPU work."""
    stages = stages or _Stages(progress, cancel)
    messages: list[str] = []
    info = probe(input_path, config.read, config.limits)
    if info.damaged is not None:
        decoded, declared = info.damaged
        messages.append(f"The file is damaged or cut short: it declares {declared} frames but only {decoded} "
                        f"({decoded / float(info.source_fps):.2f} s) decode; the frames up to the damage are edited.")
    stages.done("read")
    align_cfg = models.crop_config(config.align)
    track = detect_and_track(iter_frames(input_path, config.read), models.detector, align_cfg)
    messages.extend(track.messages)
    visible = track.visible_mask
    hidden = visible_runs(visible, value=False)
    if hidden:
        messages.append(f"Face not visible in frames {_frame_spans(hidden, float(info.fps), info.start)} of "
                        f"{track.n_frames}: kept as they are.")
    keep = np.flatnonzero(visible)
    all_transforms = compute_transforms(track, align_cfg)
    transforms = [all_transforms[i] for i in keep]
    crops = np.stack(list(align_frames(_select(iter_frames(input_path, config.read), visible), transforms, align_cfg)))
    stages.done("align")
    return AlignedClip(info, align_cfg, list(transforms), crops, messages, dict(stages.seconds),
                       None if visible.all() else visible)


def prepare_clip(input_path: str | Path, spec: EditSpec, models: PipelineModels,
                 config: PipelineConfig = PipelineConfig(), progress: ProgressFn | None = None,
                 cancel: CancelFn | None = None, stages: _Stages | None = None,
                 aligned: AlignedClip | None = None) -> PreparedClip:
    """Read, track, align, invert and directly edit the main face of ``input_path`` (no video is written).

    ``aligned``: the clip already read and aligned (``align_clip``), e.g. on the CPU before a GPU call."""
    stages = stages or _Stages(progress, cancel)
    device = models.device
    if aligned is None:
        aligned = align_clip(input_path, models, config, stages=stages)
    info, align_cfg, transforms = aligned.info, aligned.align, aligned.transforms
    messages: list[str] = list(aligned.messages)
    crops = aligned.crops
    inputs = _to_images(list(crops), device)

    # -- invert, then the direct (per-frame) edit. Out-of-domain styles are derived from the base generator, so
    # their codes come from the encoder alone (the paper: ReStyle, no PTI).
    domain = EDITS[spec.name].domain if spec.name in EDITS else "in"
    encoder, inversion_cfg = models.encoder, config.inversion
    if domain == "out":
        inversion_cfg = replace(inversion_cfg, pti=None)
        if models.encoder_out is not None:
            encoder, inversion_cfg = models.encoder_out, replace(OUT_OF_DOMAIN, metrics_batch_size=
                                                                 inversion_cfg.metrics_batch_size)
    inversion: Inversion = invert_video(
        inputs, models.generator, encoder, models.lpips, inversion_cfg, cache=models.cache,
        content_hash=hash_frames(crops) if models.cache is not None else None,
        checkpoint_names=models.checkpoint_names, progress=stages.sub("invert"))
    stages.done("invert")
    warning = reconstruction_warning(inversion, config.min_reconstruction_psnr, models.label)
    if warning:
        messages.append(warning)
    edit = apply_edit(spec, inversion.w_plus, inversion.generator, base_generator=models.generator,
                      config=config.edit, loaders=models.edit_loaders, progress=stages.sub("edit"))
    if edit.note:  # says which network realises the edit, and from which model set
        messages.append(f"{edit.note} ({models.label})" if models.label else edit.note)
    stages.done("edit")
    return PreparedClip(info, align_cfg, list(transforms), inputs, domain, inversion, edit, messages,
                        aligned.visible)


@contextlib.contextmanager
def repeatable(seed: int, device: torch.device, deterministic: bool = True) -> Iterator[None]:
    """Seeds torch (CPU and ``device``), NumPy and ``random`` for the block and restores the caller's states after;
    turns on PyTorch's deterministic algorithms (and off cuDNN's autotuner) for the block when ``deterministic``.
    These states are process-wide: blocks must not overlap in threads (``Service`` runs them one at a time)."""
    np_state, py_state = np.random.get_state(), random.getstate()
    was_deterministic, was_benchmark = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(was_deterministic)
            torch.backends.cudnn.benchmark = was_benchmark
            np.random.set_state(np_state)
            random.setstate(py_state)


def edit_video(input_path: str | Path, spec: EditSpec, models: PipelineModels, output_dir: str | Path,
               config: PipelineConfig = PipelineConfig(), progress: ProgressFn | None = None,
               cancel: CancelFn | None = None) -> PipelineResult:
    """Edit the main face of ``input_path`` and write the consistent, direct and side-by-side videos (seeded by
    ``config.seed``: the same input and settings give the same videos).

    Frames where the face is gone pass through unedited. The visible frames form one latent path with gaps: they
    are inverted, edited and made consistent together, as if consecutive. One path, rather than one per visible
    segment, because the consistency losses pair every frame with the clip's anchor (not with its neighbour), so a
    gap breaks nothing, and the person keeps one look (one tuned generator, one edit) across the whole clip.
    """
    with repeatable(config.seed, models.device, config.deterministic):
        stages = _Stages(progress, cancel)
        aligned = align_clip(input_path, models, config, stages=stages)
        edited = edit_aligned(input_path, aligned, spec, models, config, cancel=cancel, stages=stages)
        return write_outputs(input_path, aligned, edited, output_dir, config, stages=stages)


@dataclass
class EditedClip:
    """The GPU part's result: the output crops as frames and their metrics (plain arrays: it pickles back)."""

    final: np.ndarray  # consistent (stitched) crops [T,S,S,3] uint8
    direct: np.ndarray  # per-frame edit crops
    smoothing: np.ndarray | None  # latent-smoothing baseline crops (None: not computed or no video wanted)
    metrics: dict[str, Any]
    curves: dict[str, list[float]]
    xt: dict[str, np.ndarray]
    messages: list[str]
    seconds: dict[str, float]
    edit_note: str = ""
    masks: list[np.ndarray] | None = None  # paste alphas of ``final`` (phase 3: the dilated face mask)


def edit_aligned(input_path: str | Path, aligned: AlignedClip, spec: EditSpec, models: PipelineModels,
                 config: PipelineConfig = PipelineConfig(), progress: ProgressFn | None = None,
                 cancel: CancelFn | None = None, stages: _Stages | None = None) -> EditedClip:
    """All the GPU work of a run: invert, edit, consistency, stitching, the baseline and the metrics."""
    stages = stages or _Stages(progress, cancel)
    clip = prepare_clip(input_path, spec, models, config, stages=stages, aligned=aligned)
    inputs, domain, edit, inversion = clip.inputs, clip.domain, clip.edit, clip.inversion
    size = inputs.shape[-1]
    direct = edit.images

    # -- temporal consistency (phases 1 and 2), then phase 3 for in-domain edits
    consistent_generator, consistent_latents, consistent = edit.generator, edit.w_plus, direct
    if config.run_consistency and inputs.shape[0] >= 2:
        cfg = consistency_config_for(config, domain, edit.name, size)
        result = run_consistency(edit.generator, edit.w_plus, inputs, models.flow, models.lpips, cfg,
                                 mapper=edit.mapper, progress=stages.sub("consistency"), cancel=cancel)
        consistent_generator, consistent_latents = result.generator, result.latents
        consistent = result.images if result.images is not None else render(result.generator, result.latents)
    stages.done("consistency")
    final, final_masks = consistent, None
    if config.stitch is not None and domain == "in" and config.run_consistency:
        stitched = stitch_tune(consistent_generator, consistent_latents, inputs, config.stitch, edited=consistent,
                               progress=stages.sub("stitch"), cancel=cancel)
        final, final_masks = stitched.images, paste_alphas(stitched, config.stitch)  # STIT: inside the face mask
    stages.done("stitch")

    smoothing = None
    if config.smoothing is not None:
        with torch.no_grad():
            smoothing = render(edit.generator, smooth_latents(edit.w_plus, config.smoothing))

    outputs = {"direct": direct, "consistent": final}
    if smoothing is not None:
        outputs["smoothing"] = smoothing
    outputs["input"] = inputs
    metrics, curves, xt = _metrics(config, models, inputs, outputs, stages.sub("metrics"))
    if inversion.metrics is not None:
        metrics["inversion"] = {k: float(v) for k, v in asdict(inversion.metrics).items()
                                if isinstance(v, (int, float))}
    stages.done("metrics")
    keep_smoothing = smoothing is not None and config.write_smoothing_video  # frames only when a video is written
    return EditedClip(images_to_frames(final.detach().cpu()), images_to_frames(direct.detach().cpu()),
                      images_to_frames(smoothing.cpu()) if keep_smoothing else None, metrics, curves, xt,
                      clip.messages, dict(stages.seconds), edit.note, final_masks)


def write_outputs(input_path: str | Path, aligned: AlignedClip, edited: EditedClip, output_dir: str | Path,
                  config: PipelineConfig = PipelineConfig(), progress: ProgressFn | None = None,
                  cancel: CancelFn | None = None, stages: _Stages | None = None) -> PipelineResult:
    """Paste the edited crops back into the full frames and write the videos and ``metrics.json`` (CPU only)."""
    stages = stages or _Stages(progress, cancel)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    info, align_cfg, transforms = aligned.info, aligned.align, aligned.transforms
    audio = AudioSource.from_info(info)
    paths = {"output": out / "edited.mp4", "direct": out / "direct.mp4", "side_by_side": out / "side_by_side.mp4"}
    smooth_frames = edited.smoothing if config.write_smoothing_video else None
    if smooth_frames is not None:
        paths["smoothing"] = out / "smoothing.mp4"
    visible = aligned.visible if aligned.visible is not None else np.ones(info.n_frames, bool)
    weights = fade_weights(visible, config.crossfade_frames)
    writers = {name: VideoWriter(path, info.fps, audio) for name, path in paths.items()}
    report = stages.sub("write")
    try:
        # Decode once; every branch advances in lockstep, so tee holds at most a frame (an unread branch would
        # hold them all, hence one branch per stream actually written).
        branches = itertools.tee(iter_frames(input_path, config.read), 3 + (smooth_frames is not None))
        originals = branches[0]
        pasted_final = _paste_segments(branches[1], edited.final, transforms, weights, align_cfg, edited.masks,
                                       soften=False)
        pasted_direct = _paste_segments(branches[2], edited.direct, transforms, weights, align_cfg)
        pasted_smooth = (_paste_segments(branches[3], smooth_frames, transforms, weights, align_cfg)
                         if smooth_frames is not None else None)
        for t, (frame, edited_frame, direct_frame) in enumerate(zip(originals, pasted_final, pasted_direct)):
            writers["output"].write(edited_frame)
            writers["direct"].write(direct_frame)
            writers["side_by_side"].write(side_by_side([frame, direct_frame, edited_frame],
                                                       ["input", "direct", "consistent"],
                                                       height=config.side_by_side_height))
            if pasted_smooth is not None:
                writers["smoothing"].write(next(pasted_smooth))
            report((t + 1) / info.n_frames, f"frame {t + 1}/{info.n_frames}")
        for writer in writers.values():
            writer.close()
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    stages.done("write")
    seconds = {**aligned.seconds, **edited.seconds, **stages.seconds}
    result = PipelineResult(paths["output"], paths["direct"], paths["side_by_side"], paths.get("smoothing"),
                            edited.metrics, edited.curves, edited.xt, info, list(edited.messages), seconds,
                            edited.edit_note)
    (out / "metrics.json").write_text(json.dumps(result.summary(), indent=2))
    return result



"""The paper's evaluation (Sec. 4, Tables 1-3): E_warp and LPIPS of every method on a set of clips and edits.

For each clip and edit, ``prepare_clip`` reads, aligns, inverts and directly edits the clip once; every method then
starts from that direct edit:

- ``direct``: the per-frame edit itself;
- ``smoothing``: the latent-smoothing baseline (``tcve.smoothing``), rendered by the edit's generator;
- ``dvp``: Deep Video Prior (``tcve.dvp``) trained on (aligned input crops -> direct edit);
- ``phase1`` / ``phase2``: the ablations of Table 3 (update W only / update G only);
- ``full``: the method, phases 1 + 2 (phase 3, stitching, only matters once pasted back and is not measured).

Metrics are measured on the aligned crops resized to ``metrics_size``: E_warp (Lai's protocol, flows of the *input*
crops, estimated once per clip by ``models.flow``) and LPIPS (AlexNet) to the direct edit. ``seconds`` is each
method's own time; the direct edit's is the shared preparation (read, align, invert, edit) every method starts from.

``evaluate`` runs clip x edit tasks one after another in this process, or, given a Ray address, as one Ray task each
(one GPU each when the cluster has GPUs); every task builds its networks with ``models_factory`` (never pickled).
A task that fails (no face, unreadable file, ...) is recorded in ``EvaluationResult.failed``, the others go on.
The command line (``python -m tcve evaluate``, ``python -m bench.evaluate``) is ``add_arguments`` / ``run_from_args``.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .consistency import ConsistencyConfig, phase1_only, phase2_only, run_consistency
from .dvp import DVPConfig, deep_video_prior
from .edit import EDITS, EditResult, EditSpec, UnknownEdit
from .errors import Cancelled, TcveError
from .invert import render, with_pti_steps
from .identity import embed, identity_scores
from .metrics import consecutive_flows, lpips_fidelity, resize_square, warping_error_from_flows
from .pipeline import PipelineConfig, PipelineModels, consistency_config_for, prepare_clip
from .results_files import write_results
from .smoothing import SmoothingConfig, smooth_latents
from .video import probe

log = logging.getLogger(__name__)

__all__ = [
    "METHODS", "METHOD_LABELS", "PAPER_EDITS", "EvaluateConfig", "Row", "Failure", "Summary", "EvaluationResult",
    "ServiceModels", "consistency_settings", "method_output", "evaluate_clip", "evaluate", "aggregate", "to_markdown",
    "to_csv", "find_clips",
    "add_arguments", "run_from_args",
]

ProgressFn = Callable[[float, str], None]
ModelsFactory = Callable[[], PipelineModels]

METHODS = ("direct", "smoothing", "dvp", "phase1", "phase2", "full")
METHOD_LABELS = {
    "direct": "Direct editing",
    "smoothing": "Latent smoothing",
    "dvp": "DVP (Lei et al. 2020)",
    "phase1": "Phase 1 only (update W)",
    "phase2": "Phase 2 only (update G)",
    "full": "Ours (phases 1 + 2)",
}
# The paper's RAVDESS protocol: 5 in-domain edits (Table 2) and 5 out-of-domain styles (Table 1).
PAPER_EDITS = {"in": ("angry", "beard", "eyeglasses", "depp", "surprised"),
               "out": ("sketch", "pixar", "disney princess", "elf", "zombie")}
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".flv")
DOMAIN_TITLES = {"in": "In-domain edits", "out": "Out-of-domain edits"}


@dataclass(frozen=True)
class EvaluateConfig:
    """What ``evaluate`` runs. ``pipeline`` drives reading, inversion, the edit and the consistency phases
    (``pipeline.consistency`` None: the official settings of the edit's domain, see ``consistency_config_for``)."""

    methods: tuple[str, ...] = METHODS
    pipeline: PipelineConfig = PipelineConfig()
    dvp: DVPConfig = DVPConfig()
    smoothing: SmoothingConfig = SmoothingConfig()
    metrics_size: int = 256  # side of the aligned crops the metrics see (at most the generator's resolution)
    fast_pairs: int | None = None  # ConsistencyConfig.fast(pairs): several pairs per step, bf16; None: as configured
    max_frames: int | None = None  # first frames of each clip only; None: the whole clip (within pipeline.limits)
    ray_gpus: float | None = None  # GPUs per Ray task; None: 1 when the cluster has GPUs, else 0
    ray_num_cpus: int | None = None  # CPUs of a Ray instance started here (address 'local'); None: all

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")


@dataclass(frozen=True)
class Row:
    """One clip x edit x method. lpips: to the direct edit (0 for the direct edit); seconds: see the module doc."""

    clip: str
    edit: str
    domain: str
    method: str
    frames: int
    warping_error: float
    lpips: float
    seconds: float
    tl_id: float = math.nan  # STIT's identity metrics against the input crops (NaN: no identity network)
    tg_id: float = math.nan
    id_sim: float = math.nan


@dataclass(frozen=True)
class Failure:
    clip: str
    edit: str
    error: str  # exception class name
    message: str


@dataclass(frozen=True)
class Summary:
    """Means over clips (and edits) of one (domain, method), or of one (domain, edit, method) when edit is set."""

    domain: str
    method: str
    warping_error: float
    lpips: float
    seconds: float
    count: int
    edit: str = ""
    tl_id: float = math.nan
    tg_id: float = math.nan
    id_sim: float = math.nan


@dataclass
class EvaluationResult:
    rows: list[Row]
    failed: list[Failure] = field(default_factory=list)
    table: list[Summary] = field(default_factory=list)  # per (domain, method)
    per_edit: list[Summary] = field(default_factory=list)  # per (domain, edit, method)
    seconds: float = 0.0  # wall time of the whole evaluation
    settings: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------- one clip and edit


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _read_options(path: str | os.PathLike[str], config: EvaluateConfig) -> PipelineConfig:
    pipeline = config.pipeline
    if config.max_frames:
        info = probe(path, pipeline.read, limits=None)
        if info.n_frames > config.max_frames:  # shorten the range (never skip frames): keeps the motion
            pipeline = replace(pipeline, read=replace(pipeline.read, end=info.start + config.max_frames /
                                                      float(info.fps)))
    return pipeline


def consistency_settings(config: EvaluateConfig, domain: str, edit: str, size: int) -> ConsistencyConfig:
    """The consistency settings every phase method runs with for this edit and crop size."""
    cfg = consistency_config_for(config.pipeline, domain, edit, size)
    return cfg.fast(config.fast_pairs) if config.fast_pairs else cfg


def method_output(method: str, edit: EditResult, inputs: torch.Tensor, domain: str, models: PipelineModels,
                  config: EvaluateConfig = EvaluateConfig()) -> torch.Tensor:
    """The aligned crops [T,3,S,S] that ``method`` makes from a direct ``edit`` of the aligned ``inputs``."""
    if method == "direct":
        return edit.images
    if method == "smoothing":
        with torch.no_grad():
            return render(edit.generator, smooth_latents(edit.w_plus, config.smoothing))
    if method == "dvp":
        return deep_video_prior(inputs, edit.images, config.dvp)
    cfg = consistency_settings(config, domain, edit.name, int(inputs.shape[-1]))
    run = {"phase1": phase1_only, "phase2": phase2_only, "full": run_consistency}[method]
    result = run(edit.generator, edit.w_plus, inputs, models.flow, models.lpips, cfg, mapper=edit.mapper)
    return result.images if result.images is not None else render(result.generator, result.latents)


def evaluate_clip(path: str | os.PathLike[str], edit_name: str, models: PipelineModels,
                  config: EvaluateConfig = EvaluateConfig(), progress: ProgressFn | None = None) -> list[Row]:
    """Every method of ``config.methods`` on one clip and edit -> one ``Row`` per method (in that order)."""
    device = models.device
    report = progress or (lambda fraction, message: None)
    name = Path(path).name
    pipeline = _read_options(path, config)
    _sync(device)
    t0 = time.perf_counter()
    clip = prepare_clip(path, EditSpec(edit_name), models, pipeline)
    _sync(device)
    prepare_seconds = time.perf_counter() - t0
    inputs, edit, domain = clip.inputs, clip.edit, clip.domain
    direct = edit.images
    n = inputs.shape[0]
    if n < 2:
        raise TcveError(f"'{name}' has {n} frame after trimming; the warping error needs at least two.")
    size = int(inputs.shape[-1])
    metrics_size = min(config.metrics_size, size)  # never upsampled (tiny models are 64 px)
    reference = resize_square(inputs, metrics_size)
    flows = consecutive_flows(reference, models.flow)
    scorer = models.metric_lpips or models.lpips
    direct_small = resize_square(direct, metrics_size)
    source_identity = embed(models.identity, inputs) if models.identity is not None else None

    rows = []
    for i, method in enumerate(config.methods):
        report(i / len(config.methods), f"{name} / {edit_name}: {method}")
        _sync(device)
        t1 = time.perf_counter()
        video = method_output(method, edit, inputs, domain, models, config).detach()
        _sync(device)
        seconds = prepare_seconds if method == "direct" else time.perf_counter() - t1
        small = resize_square(video, metrics_size)
        werr = warping_error_from_flows(small, *flows)
        fidelity = 0.0 if method == "direct" else lpips_fidelity(small, direct_small, scorer).mean
        ids = (identity_scores(embed(models.identity, video), source_identity) if source_identity is not None
               else None)
        rows.append(Row(name, edit_name, domain, method, n, float(werr.mean), float(fidelity), round(seconds, 3),
                        *((ids.tl_id, ids.tg_id, ids.id_sim) if ids else ())))
        log.info("%s / %s / %s: E_warp %.5f LPIPS %.4f (%.1f s)", name, edit_name, method, werr.mean, fidelity,
                 seconds)
        del video, small
    report(1.0, f"{name} / {edit_name}: done")
    return rows


# --------------------------------------------------------------------------------------------- many clips


@dataclass(frozen=True)
class ServiceModels:
    """A picklable ``models_factory``: the networks of ``tcve.service.Service(models, device)`` ('auto': from_env)."""

    models: str = "tiny"
    device: str = "auto"

    def __call__(self) -> PipelineModels:
        from .service import Service

        if self.models == "auto":
            return Service.from_env().models()
        return Service(models=self.models, device=self.device).models()


def _run_task(path: str, edit: str, models: PipelineModels | None, factory: ModelsFactory | None,
              config: EvaluateConfig, progress: ProgressFn | None = None) -> tuple[list[Row], Failure | None]:
    """One clip x edit; any error (except a cancellation) becomes a ``Failure``."""
    try:
        if models is None:
            models = factory()
        return evaluate_clip(path, edit, models, config, progress), None
    except Cancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded, the other clips go on
        log.warning("%s / %s failed: %s: %s", Path(path).name, edit, type(exc).__name__, exc)
        return [], Failure(Path(path).name, edit, type(exc).__name__, str(exc) or type(exc).__name__)
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _ray_task(path: str, edit: str, factory: ModelsFactory, config: EvaluateConfig) -> tuple[list[Row],
                                                                                               Failure | None]:
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1") or 1)))
    return _run_task(path, edit, None, factory, config)


def _evaluate_ray(tasks: list[tuple[str, str]], factory: ModelsFactory, config: EvaluateConfig, address: str,
                  progress: ProgressFn) -> tuple[list[Row], list[Failure]]:
    try:
        import ray
    except ImportError:
        raise TcveError("Ray is not installed: `pip install ray` (an optional extra), or run without "
                        "--ray-address.") from None
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address == "local" and config.ray_num_cpus:
            kwargs["num_cpus"] = config.ray_num_cpus
        ray.init(address=address, **kwargs)
        started = True
    try:
        gpus = config.ray_gpus
        if gpus is None:
            gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
        remote = ray.remote(num_gpus=gpus, num_cpus=1, max_retries=0)(_ray_task)
        pending = {remote.remote(path, edit, factory, config): (path, edit) for path, edit in tasks}
        rows: list[Row] = []
        failed: list[Failure] = []
        done = 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                path, edit = pending.pop(ref)
                try:
                    task_rows, failure = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a crashed worker (e.g. killed for memory) is one failure
                    task_rows, failure = [], Failure(Path(path).name, edit, type(exc).__name__, str(exc))
                rows.extend(task_rows)
                if failure is not None:
                    failed.append(failure)
                done += 1
                progress(done / len(tasks), f"{done}/{len(tasks)} clip x edit tasks (Ray)")
        return rows, failed
    finally:
        if started:
            ray.shutdown()


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def aggregate(rows: Sequence[Row], methods: Sequence[str] = METHODS, by_edit: bool = False) -> list[Summary]:
    """Means over clips (and, unless ``by_edit``, edits) per (domain[, edit], method), methods in ``methods`` order."""
    groups: dict[tuple[str, str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.domain, row.edit if by_edit else "", row.method), []).append(row)
    order = {m: i for i, m in enumerate(methods)}
    edits_order: dict[str, int] = {}
    for row in rows:
        edits_order.setdefault(row.edit, len(edits_order))
    keys = sorted(groups, key=lambda k: (k[0] != "in", edits_order.get(k[1], -1), order.get(k[2], len(order))))
    return [Summary(d, m, _mean([r.warping_error for r in groups[(d, e, m)]]),
                    _mean([r.lpips for r in groups[(d, e, m)]]), _mean([r.seconds for r in groups[(d, e, m)]]),
                    len(groups[(d, e, m)]), e, *(_mean([getattr(r, k) for r in groups[(d, e, m)]])
                                                 for k in ("tl_id", "tg_id", "id_sim"))) for d, e, m in keys]


def evaluate(clips: Sequence[str | os.PathLike[str]], edits: Sequence[str], models_factory: ModelsFactory,
             config: EvaluateConfig = EvaluateConfig(), ray_address: str | None = None,
             progress: ProgressFn | None = None) -> EvaluationResult:
    """Every clip x edit x method. ``ray_address``: None runs here (networks built once); 'local' starts a Ray
    instance on this machine; 'auto' / 'ray://host:10001' / 'host:6379' joins a cluster (tcve installed on its nodes).
    """
    unknown = [e for e in edits if e not in EDITS]
    if unknown:
        raise UnknownEdit(f"Unknown edits {unknown}. See `python -m tcve list edits`.")
    if not clips or not edits:
        raise TcveError("Nothing to evaluate: give at least one clip and one edit.")
    report = progress or (lambda fraction, message: None)
    tasks = [(str(path), edit) for path in clips for edit in edits]
    t0 = time.perf_counter()
    if ray_address:
        rows, failed = _evaluate_ray(tasks, models_factory, config, ray_address, report)
    else:
        rows, failed = [], []
        report(0.0, "loading models")
        models = models_factory()
        for i, (path, edit) in enumerate(tasks):
            def sub(fraction: float, message: str, i: int = i) -> None:
                report((i + fraction) / len(tasks), message)

            task_rows, failure = _run_task(path, edit, models, None, config, sub)
            rows.extend(task_rows)
            if failure is not None:
                failed.append(failure)
        report(1.0, "done")
    # Stable order whatever order the tasks finished in: clips, then edits, then methods as given.
    position = {task: i for i, task in enumerate((Path(p).name, e) for p, e in tasks)}
    method_pos = {m: i for i, m in enumerate(config.methods)}
    rows.sort(key=lambda r: (position.get((r.clip, r.edit), 0), method_pos.get(r.method, 0)))
    failed.sort(key=lambda f: position.get((f.clip, f.edit), 0))
    settings = {"methods": list(config.methods), "metrics_size": config.metrics_size, "dvp": config.dvp,
                "fast_pairs": config.fast_pairs, "max_frames": config.max_frames, "ray_address": ray_address,
                "clips": len(clips), "edits": list(edits)}
    return EvaluationResult(rows, failed, aggregate(rows, config.methods), aggregate(rows, config.methods, True),
                            round(time.perf_counter() - t0, 3), settings)


# --------------------------------------------------------------------------------------------- tables


def _f(value: float, digits: int = 4, keep_small: bool = True) -> str:
    if not math.isfinite(value):
        return "-"
    if keep_small and value != 0 and abs(value) < 10 ** -(digits - 1):  # e.g. the tiny models: keep the digits
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}f}"


def to_markdown(result: EvaluationResult) -> str:
    """One table per domain (rows = methods: E_warp, LPIPS to the direct edit, seconds per clip), then per-edit
    tables in the shape of the paper's Tables 1-2, then failures."""
    out: list[str] = []
    methods = list(dict.fromkeys(s.method for s in result.table))
    for domain in ("in", "out"):
        summaries = [s for s in result.table if s.domain == domain]
        if not summaries:
            continue
        clips = len({r.clip for r in result.rows if r.domain == domain})
        edits = [e for e in dict.fromkeys(r.edit for r in result.rows if r.domain == domain)]
        out.append(f"### {DOMAIN_TITLES[domain]} ({clips} clip{'s' * (clips != 1)} x {len(edits)} "
                   f"edit{'s' * (len(edits) != 1)}: {', '.join(edits)})\n")
        out.append("| Method | E_warp ↓ | LPIPS ↓ | TL-ID ↑ | TG-ID ↑ | ID-sim ↑ | seconds/clip |")
        out.append("|---|---:|---:|---:|---:|---:|---:|")
        for s in summaries:
            out.append(f"| {METHOD_LABELS.get(s.method, s.method)} | {_f(s.warping_error)} | {_f(s.lpips)} | "
                       f"{_f(s.tl_id)} | {_f(s.tg_id)} | {_f(s.id_sim)} | {_f(s.seconds, 1, keep_small=False)} |")
        per_edit = [s for s in result.per_edit if s.domain == domain]
        if len(edits) > 1 or len(methods) > 1:
            shown = [m for m in methods if any(s.method == m for s in per_edit)]
            lp = [m for m in shown if m != "direct"]
            out.append("\nPer edit (E_warp ↓ | LPIPS ↓ to the direct edit):\n")
            out.append("| Edit | " + " | ".join(f"E_warp {m}" for m in shown) + " | "
                       + " | ".join(f"LPIPS {m}" for m in lp) + " |")
            out.append("|---|" + "---:|" * (len(shown) + len(lp)))
            cells = {(s.edit, s.method): s for s in per_edit}
            for edit in edits:
                werr = [_f(cells[(edit, m)].warping_error) if (edit, m) in cells else "-" for m in shown]
                lpips = [_f(cells[(edit, m)].lpips) if (edit, m) in cells else "-" for m in lp]
                out.append(f"| {edit} | " + " | ".join(werr) + " | " + " | ".join(lpips) + " |")
        out.append("")
    if not result.rows:
        out.append("No clip could be evaluated.\n")
    out.append("E_warp: Lai et al.'s warping error with flows of the input crops; LPIPS (AlexNet) to the direct "
               "edit; TL-ID / TG-ID: Stitch-it-in-Time's local / global identity consistency relative to the input "
               "(1 = as consistent as the input), ID-sim: mean cosine to the input's identity (the model set's "
               "identity network; '-' without one); seconds/clip: each method's own time, the direct edit's is the "
               "shared read + align + invert + edit.")
    if result.failed:
        out.append(f"\n**Failed ({len(result.failed)}):**\n")
        out.extend(f"- {f.clip} / {f.edit}: {f.error}: {f.message}" for f in result.failed)
    return "\n".join(out) + "\n"


CSV_FIELDS = ("clip", "edit", "domain", "method", "frames", "warping_error", "lpips", "seconds", "tl_id", "tg_id",
              "id_sim")


def to_csv(result: EvaluationResult) -> str:
    """One line per clip x edit x method (header ``CSV_FIELDS``); failed tasks have no lines."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for r in result.rows:
        writer.writerow([r.clip, r.edit, r.domain, r.method, r.frames, f"{r.warping_error:.6g}", f"{r.lpips:.6g}",
                         f"{r.seconds:.3f}", f"{r.tl_id:.6g}", f"{r.tg_id:.6g}", f"{r.id_sim:.6g}"])
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------- command line


def find_clips(items: Sequence[str]) -> list[Path]:
    """Video files named directly, and those inside the named folders (sorted, not recursive)."""
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise TcveError(f"No such clip or folder: '{item}'.")
    if not found:
        raise TcveError(f"No video files ({', '.join(VIDEO_SUFFIXES)}) in {', '.join(items)}.")
    return list(dict.fromkeys(found))


def default_edits(rows_by_domain: dict[str, list[tuple[str, bool, str]]]) -> list[str]:
    """The paper's five + five edits that the model set has; for a domain with none of them, its first two."""
    chosen: list[str] = []
    for domain, paper in PAPER_EDITS.items():
        free_text = ("text", "text style")  # need CLIP and a prompt
        available = [name for name, ok, _ in rows_by_domain.get(domain, []) if ok and name not in free_text]
        picked = [e for e in paper if e in available] or available[:2]
        chosen.extend(picked)
    return chosen


def _methods(text: str) -> tuple[str, ...]:
    methods = tuple(m.strip().lower() for m in text.split(",") if m.strip())
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise argparse.ArgumentTypeError(f"unknown methods {bad}; choose from {','.join(METHODS)}")
    return methods


PRESET_NAMES = ("paper", "fast")


def _preset(text: str) -> str:
    """The shared preset vocabulary (``tcve.service.resolve_preset``) -> 'paper' | 'fast'."""
    from .errors import BadRequest
    from .service import resolve_preset

    try:
        name = resolve_preset(text)
    except BadRequest as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if name == "Preview":
        raise argparse.ArgumentTypeError("evaluate measures the official settings: use --preset fast or paper "
                                         "(--max-frames and --pti-steps shorten a run)")
    return {"Fast": "fast", "Paper settings": "paper"}[name]


def config_for_preset(preset: str, methods: tuple[str, ...] = METHODS, max_frames: int | None = None,
                      dvp_epochs: int | None = None, dvp_max_size: int | None = None,
                      metrics_size: int = 256, pti_steps: int | None = None) -> EvaluateConfig:
    """'paper': the official settings (PTI, 10 + 3 epochs in-domain, 5 + 5 out-of-domain; DVP 25 epochs).
    'fast': the same epochs with ``ConsistencyConfig.fast(8)`` (8 pairs per step, bf16, masks at working size)."""
    dvp = DVPConfig()
    if dvp_epochs:
        dvp = replace(dvp, epochs=dvp_epochs)
    if dvp_max_size:
        dvp = replace(dvp, max_size=dvp_max_size)
    pipeline = PipelineConfig()
    if pti_steps is not None:
        inversion = (with_pti_steps(pipeline.inversion, pti_steps) if pti_steps
                     else replace(pipeline.inversion, pti=None))
        pipeline = replace(pipeline, inversion=inversion)
    return EvaluateConfig(methods=methods, pipeline=pipeline, dvp=dvp, metrics_size=metrics_size,
                          fast_pairs=8 if preset == "fast" else None, max_frames=max_frames)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .service import MODEL_SETS

    parser.add_argument("--clips", nargs="+", required=True, metavar="DIR_OR_FILE",
                        help="video files, or folders of them")
    parser.add_argument("--edits", help="comma-separated catalogue edits (default: the paper's 5 in-domain + 5 "
                                        "out-of-domain edits that the model set has)")
    parser.add_argument("--methods", type=_methods, default=METHODS, help=f"comma list of {','.join(METHODS)}")
    parser.add_argument("--preset", type=_preset, default="paper",
                        help="paper: official consistency settings; fast: same epochs, 8 pairs per step + bf16 "
                             "(the presets of `edit`, case-insensitive; preview is for single edits)")
    parser.add_argument("--max-frames", type=int, help="first N frames of each clip (default: whole clips)")
    parser.add_argument("--metrics-size", type=int, default=256, help="metrics on aligned crops of this side")
    parser.add_argument("--pti-steps", type=int,
                        help="PTI passes of in-domain inversions (default 200; 0: encoder only)")
    parser.add_argument("--dvp-epochs", type=int, help="DVP epochs (default 25, the official setting)")
    parser.add_argument("--dvp-max-size", type=int, help="train DVP at most at this side (default: full size)")
    parser.add_argument("--ray-address", help="run one Ray task per clip x edit: 'local' (a Ray instance here), "
                                              "'auto' or a cluster address (needs `pip install ray`)")
    parser.add_argument("--out-dir", help="write results.md, results.csv and command.txt here")
    parser.add_argument("--models", choices=("auto", *MODEL_SETS), default="auto",
                        help="network set (auto: $TCVE_MODELS, else ffhq when cached or reachable, else the demo "
                             "pack, else tiny)")
    parser.add_argument("--device", default=os.environ.get("TCVE_DEVICE", "auto"), help="auto | cpu | cuda[:N]")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def _command_line() -> str:
    argv = list(sys.argv)
    if argv and argv[0].endswith(os.path.join("tcve", "__main__.py")):
        argv[0:1] = ["-m", "tcve"]
    elif argv and argv[0].endswith(os.path.join("bench", "evaluate.py")):
        argv[0:1] = ["-m", "bench.evaluate"]
    return shlex.join([Path(sys.executable).name, *argv])


def run_from_args(args: argparse.Namespace) -> int:
    """``evaluate`` from parsed arguments: prints the Markdown tables, writes ``--out-dir``. Exit code 0 when at least
    one clip x edit was evaluated, 3 when all failed (bad input)."""
    from .terminal import EXIT_BAD_INPUT, EXIT_OK, UsageError, progress_bar

    clips = find_clips(args.clips)
    if args.ray_address:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UsageError("--ray-address needs Ray: `pip install ray` (an optional extra).") from None
    factory = ServiceModels(args.models, args.device)
    if args.edits:
        edits = [e.strip().lower().replace("_", " ").replace("-", " ") for e in args.edits.split(",") if e.strip()]
        unknown = [e for e in edits if e not in EDITS]
        if unknown:
            raise UsageError(f"Unknown edits {unknown}. See `python -m tcve list edits`.")
    else:
        from .service import Service

        service = Service.from_env() if args.models == "auto" else Service(models=args.models, device=args.device)
        edits = default_edits({d: service.edits(d) for d in ("in", "out")})
        if not edits:
            raise UsageError(f"No edit of the '{service.model_set}' model set is available here; name some with "
                             "--edits (see `python -m tcve list edits`).")
    config = config_for_preset(args.preset, args.methods, args.max_frames, args.dvp_epochs, args.dvp_max_size,
                               args.metrics_size, args.pti_steps)
    bar, report = progress_bar(not args.quiet)
    try:
        result = evaluate(clips, edits, factory, config, args.ray_address, report)
    finally:
        bar.close()
    markdown = to_markdown(result)
    print(markdown)
    if args.out_dir:
        paths = write_results(args.out_dir, markdown, to_csv(result), _command_line())
        print(f"wrote {', '.join(str(p) for p in paths)}")
    return EXIT_OK if result.rows else EXIT_BAD_INPUT

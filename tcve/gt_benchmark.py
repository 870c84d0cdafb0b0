"""A ground-truth benchmark on the demo pack: every method's distance to the *true* edited video.

The demo renderer draws a talking clip with and without an attribute (``tcve.demo.gt_clips``), so besides the paper's
E_warp and LPIPS to the direct edit we can measure how far each method's result is from the real edit, on the
aligned crops and on the full frames after pasting back, together with identity consistency (TL-ID, TG-ID) and the
demo classifier's reading of the edited attribute and of the expressions (does the result still follow the mouth,
blinks, smile and brows of the truth?).

Per clip: ground-truth landmarks (no detector: the renderer knows them) -> smoothed FFHQ transforms -> aligned crops
of the unedited clip and of its true edit; one inversion per domain (in-domain: e4e + PTI, out-of-domain: encoder
codes on the base generator, as ``pipeline.prepare_clip``); per edit, the direct edit and every method of
``tcve.evaluate.method_output``. Extra rows: ``truth`` (the rendered edit measured like a method: its distance is
0 / inf dB by construction, its E_warp and TL-ID are what a perfect result has) and ``floor`` (the inversion of the
unedited clip against the unedited clip: no method that starts from this inversion can be expected to get closer
to the truth than this).

``python -m bench.demo_gt`` (``main``) writes ``results.md``, ``results.csv`` and ``command.txt``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import logging
import math
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .align import AlignConfig, AlignTransform, FaceTrack, align_frames, compute_transforms, paste_frames, psnr
from .cache import StageCache, hash_frames
from .demo.gt_clips import GT_EDITS, ClipSpec, GroundTruthClip, GroundTruthPair, make_clip, make_pair
from .edit import EDITS, EditResult, EditSpec, apply_edit
from .evaluate import METHOD_LABELS, METHODS, EvaluateConfig, consistency_settings, method_output
from .identity import identity_scores
from .invert import OUT_OF_DOMAIN, Inversion, InversionConfig, invert_video, render, with_pti_steps
from .metrics import (consecutive_flows, frames_to_images, images_to_frames, lpips_fidelity, resize_square,
                      warping_error_from_flows)
from .pipeline import PipelineModels
from .results_files import write_results

log = logging.getLogger(__name__)

Embedder = Callable[[torch.Tensor], torch.Tensor]  # aligned crops [T,3,S,S] in [-1,1] -> embeddings [T,D]

ROW_KINDS = ("truth", "floor")  # besides METHODS
LABELS = {**METHOD_LABELS, "truth": "Ground truth (rendered edit)",
          "floor": "Reconstruction floor (inversion vs unedited clip)"}
# classifier head that reads each attribute edit, and the expression heads that show motion
EDIT_HEADS = {"eyeglasses": "eyeglasses", "angry": "brows", "surprised": "brows", "smile": "smile", "age": "old"}
MOTION_HEADS = ("mouth_open", "blink", "smile", "brows")
DEFAULT_EDITS = ("eyeglasses", "angry", "smile", "age", "sketch")


@dataclass(frozen=True)
class GTBenchmarkConfig:
    """Which clips and edits; ``evaluate`` holds the methods and their settings (inversion, consistency, DVP)."""

    clips: tuple[ClipSpec, ...] = (ClipSpec(0), ClipSpec(1), ClipSpec(2))
    edits: tuple[str, ...] = DEFAULT_EDITS
    evaluate: EvaluateConfig = EvaluateConfig()

    def __post_init__(self) -> None:
        unknown = [e for e in self.edits if e not in GT_EDITS]
        if unknown or not self.edits:
            raise ValueError(f"no ground truth for edits {unknown}; choose from {', '.join(GT_EDITS)}")
        if not self.clips:
            raise ValueError("give at least one clip")


@dataclass(frozen=True)
class GTRow:
    """One clip x edit x method (edit 'none' for the floor). NaN where a metric does not apply."""

    clip: str
    edit: str
    domain: str
    method: str
    frames: int
    warping_error: float
    lpips_direct: float  # LPIPS to the direct edit (aligned crops)
    gt_lpips_crop: float
    gt_psnr_crop: float  # dB, mean over frames (inf when every frame is identical)
    gt_lpips_frame: float  # full frames, after pasting back
    gt_psnr_frame: float
    tl_id: float
    tg_id: float
    id_similarity: float  # mean cosine of each frame's embedding with its source frame's
    edit_accuracy: float  # classifier: the edited attribute agrees with the truth (share of frames)
    motion_accuracy: float  # classifier: mouth / blink / smile / brows agree with the truth (mean over heads)
    seconds: float
    # per expression head (the edited one included): share of frames the classifier reads as the truth's label
    acc_mouth_open: float = float("nan")
    acc_blink: float = float("nan")
    acc_smile: float = float("nan")
    acc_brows: float = float("nan")


CSV_FIELDS = tuple(GTRow.__dataclass_fields__)


@dataclass
class GTResult:
    rows: list[GTRow]
    seconds: float = 0.0
    settings: dict[str, object] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ one clip


def ground_truth_track(clip: GroundTruthClip) -> FaceTrack:
    """The renderer's own landmarks as a track (every frame 'detected'): alignment without detector noise."""
    h, w = clip.frames.shape[1:3]
    return FaceTrack(points=clip.landmarks.astype(np.float64), detected=np.ones(len(clip.frames), bool),
                     frame_size=(h, w), max_faces=1)


def _inversion_config(domain: str, models: PipelineModels, config: InversionConfig) -> tuple[torch.nn.Module,
                                                                                              InversionConfig]:
    # The choice pipeline.prepare_clip makes: out-of-domain styles start from encoder codes on the base generator.
    if domain == "out":
        if models.encoder_out is not None:
            return models.encoder_out, replace(OUT_OF_DOMAIN, metrics_batch_size=config.metrics_batch_size)
        return models.encoder, replace(config, pti=None)
    return models.encoder, config


@dataclass
class _Scorer:
    """Everything measured against one clip: its input crops and flows, full frames, transforms, source embeddings."""

    models: PipelineModels
    align: AlignConfig
    transforms: list[AlignTransform]
    inputs: torch.Tensor  # aligned unedited crops [T,3,S,S]
    frames: np.ndarray  # unedited full frames
    metrics_size: int
    embed: Embedder | None
    classifier: torch.nn.Module | None

    def __post_init__(self) -> None:
        self.flows = consecutive_flows(resize_square(self.inputs, self.metrics_size), self.models.flow)
        self.source_embedding = self._embed(self.inputs)

    @torch.no_grad()
    def _embed(self, images: torch.Tensor) -> torch.Tensor | None:
        return None if self.embed is None else self.embed(images).detach().float().cpu()

    def paste(self, crops: np.ndarray) -> np.ndarray:
        return np.stack(list(paste_frames(self.frames, crops, self.transforms, config=self.align)))

    def lpips(self, a: torch.Tensor, b: torch.Tensor) -> float:
        scorer = self.models.metric_lpips or self.models.lpips
        return lpips_fidelity(a, b, scorer).mean

    @staticmethod
    def psnr(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean([psnr(x, y) for x, y in zip(a, b)]))

    @torch.no_grad()
    def accuracy(self, crops: torch.Tensor, labels: np.ndarray | None) -> dict[str, float]:
        """Per classifier head, the share of frames where it agrees with ``labels`` (NaN where no label is defined;
        all NaN without a classifier or labels)."""
        from .demo.classifier import HEADS, IGNORE

        if self.classifier is None or labels is None:
            return {h.name: float("nan") for h in HEADS}
        pred = self.classifier(crops.float().to(next(self.classifier.parameters()).device))
        pred = torch.stack([lg.argmax(-1) for lg in self.classifier.split(pred).values()], 1).cpu().numpy()
        out = {}
        for i, h in enumerate(HEADS):
            keep = labels[:, i] != IGNORE
            out[h.name] = float((pred[keep, i] == labels[keep, i]).mean()) if keep.any() else float("nan")
        return out

    def row(self, clip: str, edit: str, domain: str, method: str, video: torch.Tensor, truth_crops: np.ndarray,
            truth_frames: np.ndarray, direct: torch.Tensor | None, labels: np.ndarray | None, edit_head: str | None,
            seconds: float) -> GTRow:
        video = video.detach().float()
        small = resize_square(video, self.metrics_size)
        with torch.no_grad():
            werr = float(warping_error_from_flows(small, *self.flows).mean)
        crops = images_to_frames(video.cpu())
        frames = self.paste(crops) if method != "truth" or domain == "out" else truth_frames
        if method == "truth":
            crops = truth_crops
        truth_images = frames_to_images(truth_crops)
        lp_direct = (float("nan") if direct is None else
                     0.0 if method == "direct" else self.lpips(small, resize_square(direct.float(), self.metrics_size)))
        tl = tg = sim = float("nan")
        embedding = self._embed(video.to(self.inputs.device))
        if embedding is not None:
            ids = identity_scores(embedding, self.source_embedding)
            tl, tg, sim = ids.tl_id, ids.tg_id, ids.id_sim
        acc = self.accuracy(video, labels)
        motion = _mean([acc[h] for h in MOTION_HEADS if h != edit_head])
        return GTRow(
            clip, edit, domain, method, int(video.shape[0]), werr, lp_direct,
            self.lpips(frames_to_images(crops), truth_images), self.psnr(crops, truth_crops),
            self.lpips(frames_to_images(frames), frames_to_images(truth_frames)), self.psnr(frames, truth_frames),
            tl, tg, sim, acc[edit_head] if edit_head else float("nan"), motion, round(seconds, 3),
            *(acc[h] for h in MOTION_HEADS))


def _labels(attributes) -> np.ndarray:
    from .demo.classifier import labels_for

    return labels_for(list(attributes))


def evaluate_ground_truth_clip(spec: ClipSpec, edits: Sequence[str], models: PipelineModels,
                               config: EvaluateConfig = EvaluateConfig(), embed: Embedder | None = None,
                               classifier: torch.nn.Module | None = None,
                               progress: Callable[[str], None] | None = None) -> list[GTRow]:
    """Floor, truth and every method of ``config.methods`` for each of ``edits`` on the clip ``spec``."""
    say = progress or (lambda message: None)
    device = models.device
    clip = make_clip(spec)
    align = models.crop_config(config.pipeline.align)
    transforms = compute_transforms(ground_truth_track(clip), align)
    crops = np.stack(list(align_frames(clip.frames, transforms, align)))
    inputs = frames_to_images(crops).to(device)
    metrics_size = min(config.metrics_size, int(inputs.shape[-1]))
    scorer = _Scorer(models, align, transforms, inputs, clip.frames, metrics_size, embed, classifier)
    source_labels = _labels(clip.attributes) if classifier is not None else None
    rows: list[GTRow] = []
    inversions: dict[str, Inversion] = {}

    def inversion(domain: str) -> Inversion:
        if domain not in inversions:
            encoder, inv_cfg = _inversion_config(domain, models, config.pipeline.inversion)
            say(f"{clip.name}: inverting ({domain}-domain, PTI {inv_cfg.pti.steps if inv_cfg.pti else 0} passes)")
            t0 = time.perf_counter()
            inv = invert_video(inputs, models.generator, encoder, models.lpips, inv_cfg, cache=models.cache,
                               content_hash=hash_frames(crops) if models.cache is not None else None,
                               checkpoint_names=models.checkpoint_names or None)
            # encoder + PTI time as measured when it was computed (also for an inversion loaded from the cache)
            seconds = inv.timings.get("encode", 0.0) + inv.timings.get("pti", 0.0) or time.perf_counter() - t0
            with torch.no_grad():
                recon = render(inv.generator, inv.w_plus)
            rows.append(scorer.row(clip.name, "none", domain, "floor", recon, crops, clip.frames, None,
                                   source_labels, None, seconds))
            inversions[domain] = inv
        return inversions[domain]

    for edit_name in edits:
        pair = make_pair(clip, edit_name)
        catalogue_domain = EDITS[edit_name].domain
        if catalogue_domain != pair.domain:  # pragma: no cover - guards the two tables
            raise ValueError(f"{edit_name}: catalogue domain {catalogue_domain}, ground truth {pair.domain}")
        inv = inversion(pair.domain)
        t0 = time.perf_counter()
        edit = apply_edit(EditSpec(edit_name), inv.w_plus, inv.generator, base_generator=models.generator,
                          config=config.pipeline.edit, loaders=models.edit_loaders)
        edit_seconds = time.perf_counter() - t0
        truth_crops, truth_frames = _truth(pair, crops, transforms, align, scorer)
        labels = (_labels(pair.edited_attributes) if classifier is not None and pair.edited_attributes is not None
                  else None)
        head = EDIT_HEADS.get(edit_name)
        rows.append(scorer.row(clip.name, edit_name, pair.domain, "truth", frames_to_images(truth_crops).to(device),
                               truth_crops, truth_frames, edit.images, labels, head, 0.0))
        for method in config.methods:
            say(f"{clip.name} / {edit_name}: {method}")
            t1 = time.perf_counter()
            if method in CACHED_METHODS and models.cache is not None:
                video, seconds = _cached_output(method, edit, inputs, pair.domain, models, config)
            else:
                video = method_output(method, edit, inputs, pair.domain, models, config)
                seconds = edit_seconds if method == "direct" else time.perf_counter() - t1
            row = scorer.row(clip.name, edit_name, pair.domain, method, video, truth_crops, truth_frames,
                             edit.images, labels, head, seconds)
            rows.append(row)
            log.info("%s / %s / %s: E_warp %.3g, GT PSNR %.2f dB (%.1f s)", clip.name, edit_name, method,
                     row.warping_error, row.gt_psnr_crop, seconds)
        del edit
    return rows


CACHED_METHODS = ("dvp", "phase1", "phase2", "full")  # the slow ones


def _cached_output(method: str, edit: EditResult, inputs: torch.Tensor, domain: str, models: PipelineModels,
                   config: EvaluateConfig) -> tuple[torch.Tensor, float]:
    """``method_output`` through ``models.cache``, keyed by the input crops, the direct edit (codes and images) and
    the method's full settings (``DVPConfig`` / the ``ConsistencyConfig`` it runs with), so rerunning the benchmark
    (e.g. to score with another identity network) does not train again. Returns (video, seconds as measured when it
    was computed). Changing the method's code without its settings needs a fresh cache folder."""
    digest = hashlib.sha256()
    if method == "dvp":  # DVP sees only the input crops and the direct edit's images
        stage, parts = "dvp", (hash_frames(inputs.detach().cpu()), hash_frames(edit.images.detach().cpu()),
                               repr(config.dvp))
    else:
        stage = "outputs"
        parts = (method, hash_frames(inputs.detach().cpu()), hash_frames(edit.images.detach().cpu()),
                 hash_frames(edit.w_plus.detach().cpu()),
                 repr(consistency_settings(config, domain, edit.name, int(inputs.shape[-1]))))
    for part in parts:
        digest.update(part.encode())
    key = digest.hexdigest()
    entry = models.cache.load(stage, key)
    if entry is not None:
        return entry["images"].to(inputs.device), float(entry["seconds"])
    t0 = time.perf_counter()
    video = method_output(method, edit, inputs, domain, models, config).detach()
    seconds = time.perf_counter() - t0
    models.cache.save(stage, key, {"images": video.cpu(), "seconds": seconds})
    return video, seconds


def _truth(pair: GroundTruthPair, crops: np.ndarray, transforms: list[AlignTransform], align: AlignConfig,
           scorer: _Scorer) -> tuple[np.ndarray, np.ndarray]:
    """True edited crops (aligned with the *unedited* clip's transforms, as the pipeline aligns) and full frames.
    Styles have no full-frame render: their truth is the true stylised crop pasted back like any result."""
    if pair.edited_frames is not None:
        return np.stack(list(align_frames(pair.edited_frames, transforms, align))), pair.edited_frames
    styled = np.stack([pair.crop_style(c) for c in crops])
    return styled, scorer.paste(styled)


def run_benchmark(models: PipelineModels, config: GTBenchmarkConfig = GTBenchmarkConfig(),
                  embed: Embedder | None = None, classifier: torch.nn.Module | None = None,
                  progress: Callable[[str], None] | None = None) -> GTResult:
    """Every clip x edit x method of ``config``."""
    t0 = time.perf_counter()
    rows: list[GTRow] = []
    for spec in config.clips:
        rows.extend(evaluate_ground_truth_clip(spec, config.edits, models, config.evaluate, embed, classifier,
                                               progress))
    ev = config.evaluate
    inv = ev.pipeline.inversion
    settings = {"clips": [s.name for s in config.clips], "frames": [s.n_frames for s in config.clips],
                "fps": [s.fps for s in config.clips], "edits": list(config.edits), "methods": list(ev.methods),
                "pti_steps": inv.pti.steps if inv.pti else 0, "dvp_epochs": ev.dvp.epochs,
                "dvp_max_size": ev.dvp.max_size, "fast_pairs": ev.fast_pairs, "metrics_size": ev.metrics_size,
                "identity": embed is not None, "classifier": classifier is not None}
    return GTResult(rows, round(time.perf_counter() - t0, 1), settings)


# ------------------------------------------------------------------------------------------------ tables

METRIC_FIELDS = ("warping_error", "lpips_direct", "gt_lpips_crop", "gt_psnr_crop", "gt_lpips_frame", "gt_psnr_frame",
                 "tl_id", "tg_id", "id_similarity", "edit_accuracy", "motion_accuracy", "seconds",
                 *(f"acc_{h}" for h in MOTION_HEADS))


def _mean(values: Sequence[float]) -> float:
    """Mean of the defined values; inf stays inf (a PSNR of identical videos)."""
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


def summarise(rows: Sequence[GTRow], by_edit: bool = False) -> list[dict[str, object]]:
    """Means over clips (and edits unless ``by_edit``) per (domain[, edit], method), in table order."""
    order = {m: i for i, m in enumerate(("floor", "truth", *METHODS))}
    groups: dict[tuple[str, str, str], list[GTRow]] = {}
    edits: dict[str, int] = {}
    for r in rows:
        edits.setdefault(r.edit, len(edits))
        groups.setdefault((r.domain, r.edit if by_edit else "", r.method), []).append(r)
    keys = sorted(groups, key=lambda k: (k[0] != "in", edits.get(k[1], -1), order.get(k[2], 99)))
    return [{"domain": d, "edit": e, "method": m, "count": len(groups[(d, e, m)]),
             **{f: _mean([getattr(r, f) for r in groups[(d, e, m)]]) for f in METRIC_FIELDS}} for d, e, m in keys]


def _fmt(v: float, kind: str) -> str:
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "∞"
    if kind == "sci":
        return f"{v:.3g}" if v == 0 else f"{v:.2e}"
    if kind == "db":
        return f"{v:.2f}"
    if kind == "s":
        return f"{v:.1f}"
    return f"{v:.3f}" if kind == "acc" else f"{v:.4f}"


COLUMNS = (("E_warp ↓", "warping_error", "sci"), ("LPIPS→direct ↓", "lpips_direct", "4"),
           ("GT LPIPS crop ↓", "gt_lpips_crop", "4"), ("GT PSNR crop ↑", "gt_psnr_crop", "db"),
           ("GT LPIPS frame ↓", "gt_lpips_frame", "4"), ("GT PSNR frame ↑", "gt_psnr_frame", "db"),
           ("TL-ID ↑", "tl_id", "4"), ("TG-ID ↑", "tg_id", "4"), ("ID sim ↑", "id_similarity", "4"),
           ("edit acc ↑", "edit_accuracy", "acc"), ("motion acc ↑", "motion_accuracy", "acc"),
           ("s/clip", "seconds", "s"))


def _table(summaries: Sequence[dict[str, object]]) -> list[str]:
    direct = next((s for s in summaries if s["method"] == "direct"), None)
    out = ["| Method | " + " | ".join(c[0] for c in COLUMNS[:1]) + " | ×direct | "
           + " | ".join(c[0] for c in COLUMNS[1:]) + " |",
           "|---|" + "---:|" * (len(COLUMNS) + 1)]
    for s in summaries:
        ratio = (s["warping_error"] / direct["warping_error"] if direct and direct["warping_error"] and
                 s["method"] != "floor" else float("nan"))
        cells = [_fmt(float(s[f]), k) for _, f, k in COLUMNS]
        out.append(f"| {LABELS.get(str(s['method']), s['method'])} | {cells[0]} | {_fmt(ratio, 'ratio')} | "
                   + " | ".join(cells[1:]) + " |")
    return out


def goals(rows: Sequence[GTRow]) -> list[str]:
    """The issue's goals, checked on the means: one line each, 'met' / 'NOT met' with the numbers."""
    lines = []
    by = {(s["domain"], s["method"]): s for s in summarise(rows)}

    def get(domain: str, method: str, f: str) -> float:
        s = by.get((domain, method))
        return float(s[f]) if s else float("nan")

    def check(ok: bool, text: str) -> None:
        lines.append(f"- {'met' if ok else '**NOT met**'}: {text}")

    if ("in", "full") in by and ("in", "direct") in by:
        ratio = get("in", "full", "warping_error") / get("in", "direct", "warping_error")
        check(ratio <= 0.5, f"in-domain full E_warp ≤ 0.5× direct (measured {ratio:.2f}×)")
        for f, name, better in (("gt_psnr_crop", "GT PSNR crop", "higher"), ("gt_lpips_crop", "GT LPIPS crop",
                                                                              "lower")):
            full, direct = get("in", "full", f), get("in", "direct", f)
            ok = full >= direct if better == "higher" else full <= direct
            check(ok, f"in-domain full no farther from the truth than direct ({name}: full {full:.4g}, "
                      f"direct {direct:.4g})")
        if ("in", "smoothing") in by:
            full, smooth = get("in", "full", "gt_psnr_crop"), get("in", "smoothing", "gt_psnr_crop")
            check(full > smooth, f"in-domain full closer to the truth than latent smoothing (GT PSNR crop: full "
                                 f"{full:.2f} dB, smoothing {smooth:.2f} dB)")
        full, direct = get("in", "full", "tl_id"), get("in", "direct", "tl_id")
        if math.isnan(full) or math.isnan(direct):
            lines.append("- not measured: TL-ID (no identity embedding was given)")
        else:
            check(full >= direct, f"in-domain full TL-ID ≥ direct (full {full:.4f}, direct {direct:.4f})")
    if ("out", "full") in by and ("out", "direct") in by:
        ratio = get("out", "full", "warping_error") / get("out", "direct", "warping_error")
        check(ratio <= 0.9, f"out-of-domain full E_warp moves measurably (≤ 0.9× direct; measured {ratio:.2f}×)")
    return lines


def to_markdown(result: GTResult) -> str:
    out: list[str] = []
    for domain, title in (("in", "In-domain edits"), ("out", "Out-of-domain edits")):
        summaries = [s for s in summarise(result.rows) if s["domain"] == domain]
        if not summaries:
            continue
        clips = sorted({r.clip for r in result.rows if r.domain == domain})
        edits = list(dict.fromkeys(r.edit for r in result.rows if r.domain == domain and r.edit != "none"))
        out.append(f"### {title} ({len(clips)} clips x {len(edits)} edits: {', '.join(edits)}; means)\n")
        out.extend(_table(summaries))
        if domain == "in" and any(not math.isnan(float(s["acc_mouth_open"])) for s in summaries):
            out.append("\nExpression following (classifier agreement with the truth's labels, share of frames):\n")
            out.append("| Method | " + " | ".join(MOTION_HEADS) + " |")
            out.append("|---|" + "---:|" * len(MOTION_HEADS))
            for s in summaries:
                out.append(f"| {LABELS.get(str(s['method']), s['method'])} | "
                           + " | ".join(_fmt(float(s[f"acc_{h}"]), "acc") for h in MOTION_HEADS) + " |")
        if len(edits) > 1:
            out.append("\nPer edit (E_warp ↓ / GT PSNR crop ↑ dB / GT LPIPS crop ↓):\n")
            per = [s for s in summarise(result.rows, by_edit=True) if s["domain"] == domain and s["edit"] != "none"]
            methods = list(dict.fromkeys(str(s["method"]) for s in per))
            out.append("| Edit | " + " | ".join(LABELS.get(m, m) for m in methods) + " |")
            out.append("|---|" + "---:|" * len(methods))
            cells = {(s["edit"], s["method"]): s for s in per}
            for edit in edits:
                row = []
                for m in methods:
                    s = cells.get((edit, m))
                    row.append("-" if s is None else f"{_fmt(float(s['warping_error']), 'sci')} / "
                               f"{_fmt(float(s['gt_psnr_crop']), 'db')} / {_fmt(float(s['gt_lpips_crop']), '4')}")
                out.append(f"| {edit} | " + " | ".join(row) + " |")
        out.append("")
    out.append("**Goals of issue 14 (on these means):**\n")
    out.extend(goals(result.rows))
    out.append("")
    out.append("E_warp: Lai et al.'s warping error on the aligned crops with flows of the unedited input; ×direct: "
               "E_warp over the direct edit's. LPIPS (the demo set's LPIPS, a random-weight AlexNet: no pretrained "
               "backbone offline) and PSNR to the ground truth on the aligned crops and on the full frames after "
               "pasting back (the same feathered paste for every method). TL-ID / TG-ID / ID sim: identity "
               "embeddings of the result against those of the unedited input. edit acc / motion acc: the demo "
               "classifier's reading of the edited attribute / of mouth, blink, smile and brows (the edited one "
               "left out) against the truth's labels. s/clip: own time (direct: the edit; floor: the inversion).")
    if result.seconds:
        out.append(f"\nTotal wall time: {result.seconds:.0f} s.")
    out.append(f"Settings: {result.settings}")
    return "\n".join(out) + "\n"


def rows_from_csv(text: str) -> list[GTRow]:
    """Rows written by ``to_csv`` (numbers back to float, 'inf'/'nan' included)."""
    rows = []
    for record in csv.DictReader(io.StringIO(text)):
        values = {}
        for name, f in GTRow.__dataclass_fields__.items():
            v = record[name]
            values[name] = int(v) if f.type in ("int", int) else v if f.type in ("str", str) else float(v)
        rows.append(GTRow(**values))
    return rows


def combine(parts: Sequence[Sequence[GTRow]], rtol: float = 1e-3) -> list[GTRow]:
    """Rows of several runs of the same clips and settings (e.g. the baselines, then the consistency phases) as one
    list. A (clip, edit, method) present in several parts must agree on every metric except seconds (to ``rtol``):
    that is the check that the parts measured the same inversions and direct edits."""
    merged: dict[tuple[str, str, str, str], GTRow] = {}
    for rows in parts:
        for r in rows:
            key = (r.clip, r.edit, r.domain, r.method)
            if key in merged:
                first = merged[key]
                for f in METRIC_FIELDS:
                    a, b = getattr(first, f), getattr(r, f)
                    same = (math.isnan(a) and math.isnan(b)) or a == b or (
                        math.isfinite(a) and math.isfinite(b) and abs(a - b) <= rtol * max(abs(a), abs(b)))
                    if f != "seconds" and not same:
                        raise ValueError(f"{key}: {f} differs between the parts ({a} vs {b}): not the same run "
                                         "settings or inputs")
                continue
            merged[key] = r
    order = {m: i for i, m in enumerate(("floor", "truth", *METHODS))}
    clips = {c: i for i, c in enumerate(dict.fromkeys(r.clip for rows in parts for r in rows))}
    edits = {e: i for i, e in enumerate(dict.fromkeys(r.edit for rows in parts for r in rows))}
    return sorted(merged.values(), key=lambda r: (clips[r.clip], r.domain != "in", edits[r.edit],
                                                  order.get(r.method, 99)))


def to_csv(result: GTResult) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for r in result.rows:
        writer.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in (getattr(r, f) for f in CSV_FIELDS)])
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------ command line


def demo_identity_embedder(device: torch.device | str = "cpu", path: str | Path | None = None
                           ) -> tuple[Embedder | None, str]:
    """An identity embedding from ``path`` (default: the demo pack's ``weights/identity.pt``) and a label naming the
    file (its sha256 prefix); (None, reason) where there is none (the identity columns then stay empty)."""
    from .demo import WEIGHTS_DIR
    from .identity import embed, load_identity_net

    path = Path(path) if path is not None else WEIGHTS_DIR / "identity.pt"
    if not path.exists():
        log.warning("no identity net at %s: TL-ID / TG-ID are not measured", path)
        return None, f"none ({path} missing)"
    net = load_identity_net(path).to(device)
    label = f"{path.name} sha256 {hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"
    return (lambda images: embed(net, images)), label


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.demo_gt", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0,1,2", help="comma list of clip seeds (one clip each)")
    p.add_argument("--frames", type=int, default=20, help="frames per clip")
    p.add_argument("--fps", type=float, default=10.0, help="frame rate of the clips (motion per frame)")
    p.add_argument("--edits", default=",".join(DEFAULT_EDITS), help=f"comma list of {','.join(GT_EDITS)}")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {','.join(METHODS)}")
    p.add_argument("--pti-steps", type=int, default=50, help="PTI passes of the in-domain inversion (0: encoder only)")
    p.add_argument("--dvp-epochs", type=int, default=25, help="DVP epochs (official 25)")
    p.add_argument("--dvp-max-size", type=int, help="train DVP at most at this side")
    p.add_argument("--fast-pairs", type=int, help="consistency: this many pairs per step + bf16 (default: official)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--device", default="cpu", help="cpu | cuda[:N]")
    p.add_argument("--cache", help="keep inversions and DVP results here and reuse them (keyed by their inputs and "
                                   "settings; seconds are those measured when computed)")
    p.add_argument("--identity", help="identity embedding file (default: the demo pack's weights/identity.pt)")
    p.add_argument("--out-dir", help="write results.md, results.csv, command.txt here")
    p.add_argument("--combine", nargs="+", metavar="CSV",
                   help="no run: one table from the results.csv of several runs (rows they share must agree)")
    return p


def config_from_args(args: argparse.Namespace) -> GTBenchmarkConfig:
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    edits = tuple(e.strip() for e in args.edits.split(",") if e.strip())
    ev = EvaluateConfig(methods=methods, fast_pairs=args.fast_pairs)
    inversion = (with_pti_steps(ev.pipeline.inversion, args.pti_steps) if args.pti_steps
                 else replace(ev.pipeline.inversion, pti=None))
    ev = replace(ev, pipeline=replace(ev.pipeline, inversion=inversion),
                 dvp=replace(ev.dvp, epochs=args.dvp_epochs, max_size=args.dvp_max_size))
    clips = tuple(ClipSpec(seed, n_frames=args.frames, fps=args.fps) for seed in seeds)
    return GTBenchmarkConfig(clips=clips, edits=edits, evaluate=ev)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if args.combine:
        parts = [rows_from_csv(Path(p).read_text()) for p in args.combine]
        result = GTResult(combine(parts), settings={"combined": list(args.combine)})
    else:
        torch.set_num_threads(args.threads)
        torch.manual_seed(0)
        config = config_from_args(args)
        from .demo.classifier import load_classifier
        from .service import Service

        models = Service(models="demo", device=args.device).models()
        if args.cache:
            models = replace(models, cache=StageCache(args.cache),
                             checkpoint_names=models.checkpoint_names or ("demo-stylegan2-64", "demo-e4e"))
        embed, identity_label = demo_identity_embedder(models.device, args.identity)
        result = run_benchmark(models, config, embed, load_classifier().to(models.device),
                               progress=lambda m: print(m, file=sys.stderr, flush=True))
        result.settings["identity"] = identity_label
    markdown = to_markdown(result)
    print(markdown)
    if args.out_dir:
        argv_list = list(sys.argv[1:] if argv is None else argv)
        command = shlex.join(["python", "-m", "bench.demo_gt", *argv_list]) + "\n"
        if args.combine:  # the parts' own commands first: together they reproduce the table
            earlier = [Path(p).with_name("command.txt") for p in args.combine]
            command = "".join(c.read_text() for c in earlier if c.exists()) + command
        write_results(args.out_dir, markdown, to_csv(result), command)
    return 0


__all__ = ["CSV_FIELDS", "DEFAULT_EDITS", "GTBenchmarkConfig", "GTResult", "GTRow", "combine",
           "demo_identity_embedder", "evaluate_ground_truth_clip", "goals", "ground_truth_track", "main",
           "rows_from_csv", "run_benchmark", "summarise", "to_csv", "to_markdown"]

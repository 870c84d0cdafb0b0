"""The GPU-time cost model: what one run of tcve reserves on ZeroGPU, from per-unit costs of its stages.

``GpuCosts`` holds seconds per unit of work (a PTI frame pass, a consistency pair, a stitching step, ...) at 1024 px;
``estimate_gpu`` turns a run's settings into seconds per stage. The built-in constants are estimates. A GPU rehearsal
(``python -m bench.rehearsal --from-crops --costs-out costs.json``) measures the stages and ``fit_costs`` derives the
per-unit costs from them; ``GpuCosts.load`` reads that file and ``Service.from_env`` uses it when
``$TCVE_GPU_COSTS`` names it, so the ZeroGPU duration is then sized from measured costs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .consistency import ConsistencyConfig

if TYPE_CHECKING:  # not at run time: tcve.pipeline imports av, which a bare GPU machine lacks
    from .pipeline import PipelineConfig

COSTS_ENV = "TCVE_GPU_COSTS"  # a JSON file written by ``GpuCosts.save`` (a GPU rehearsal's measured costs)


@dataclass(frozen=True)
class GpuCosts:
    """GPU seconds per unit of work at ``reference_side`` (1024) on an H100/H200-class GPU, tcve as written today
    (eager, fp32). The defaults are ESTIMATES, not measurements (no GPU was available to this project): issue 12's
    FLOP counts of the official iteration counts, timed at the upper end of its launch-bound ranges. PTI: 200 passes
    x 150 frames (30,000 frame passes, ~37,000 TFLOP) in 7-22 min; phases 1-3: 1,490 + 447 pair steps and 7,500
    stitching steps (~6,300 TFLOP, about half of it stitching) in 2-5 min. Smaller generators scale with their pixel
    count. ``source`` says where the numbers come from (a measured file names its device and command).
    """

    pti_frame_pass: float = 0.044  # 22 min / 30,000 frame passes
    consistency_pair: float = 0.078  # ~1.6 TFLOP per (anchor, frame) pair step at the ~21 TFLOP/s of "5 min"
    stitch_step: float = 0.020  # ~0.42 TFLOP per one-frame stitching step, same rate
    per_frame: float = 0.05  # encoder, the direct edit, the baseline and the metrics (RAFT and LPIPS at 256)
    text_step: float = 0.2  # in-domain free text: 4 keyframes through G and CLIP, forward and backward
    nada_step: float = 0.15  # free-text style: frozen and tuned G on 2 codes, forward and backward
    start: float = 20.0  # worker start-up, weights onto the GPU, the edit's networks from the disk cache
    margin: float = 1.25  # a call that runs past its duration may be aborted: reserve a quarter more
    reference_side: int = 1024
    source: str = "estimate (FLOP counts; no GPU measurement)"

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> GpuCosts:
        """The costs in ``path`` (``save``'s JSON); fields it leaves out keep their defaults. A file that is not such
        a JSON object, or has a non-positive cost, raises ``ValueError`` naming it."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"GPU cost file {path.name} cannot be read: {exc}") from None
        known = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or set(data) - known:
            extra = sorted(set(data) - known) if isinstance(data, dict) else "not an object"
            raise ValueError(f"GPU cost file {path.name} has unknown fields: {extra}")
        costs = replace(cls(), **data)
        bad = [f.name for f in fields(cls) if f.name not in ("source",)
               and not (isinstance(getattr(costs, f.name), (int, float)) and getattr(costs, f.name) > 0)]
        if bad:
            raise ValueError(f"GPU cost file {path.name}: {', '.join(bad)} must be positive numbers")
        return costs


@dataclass(frozen=True)
class GpuEstimate:
    """The GPU time a run reserves: ``stages`` (seconds, before the margin), ``seconds`` (what ``@spaces.GPU`` is
    asked for) and ``per_frame`` (the part that grows with each frame, with the margin)."""

    stages: dict[str, float]
    seconds: int
    per_frame: float
    frames: int
    margin: float

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v:.0f} s" for k, v in self.stages.items() if v >= 0.5)
        return f"{parts}, plus {100 * (self.margin - 1):.0f}% margin"


def pair_count(consistency: ConsistencyConfig, n_frames: int, epochs: int) -> int:
    """(anchor, frame) pairs a phase of ``epochs`` renders: every step takes ``pairs_per_step`` frames, the last
    batch of an epoch topped up to full size."""
    frames = max(1, int(n_frames))
    if frames < 2:
        return 0
    k = max(1, min(consistency.pairs_per_step, frames - 1))
    return epochs * -(-(frames - 1) // k) * k


def estimate_gpu(config: PipelineConfig, n_frames: int, size: int, domain: str, kind: str,
                 costs: GpuCosts = GpuCosts()) -> GpuEstimate:
    """GPU seconds of a run of ``n_frames`` frames with ``config`` (consistency resolved) at generator side ``size``."""
    frames = max(1, int(n_frames))
    scale = (size / costs.reference_side) ** 2
    pti = config.inversion.pti if domain == "in" else None
    cons = config.consistency or ConsistencyConfig()
    per_pair = costs.consistency_pair * scale
    p1 = config.run_consistency and cons.run_phase1 and frames >= 2
    p2 = config.run_consistency and cons.run_phase2 and frames >= 2
    stitch = config.stitch is not None and domain == "in" and config.run_consistency
    per_frame = {
        "PTI": pti.steps * costs.pti_frame_pass * scale if pti is not None else 0.0,
        "phase 1": cons.phase1.epochs * per_pair if p1 else 0.0,
        "phase 2": cons.phase2.epochs * per_pair if p2 else 0.0,
        "stitching": config.stitch.steps * costs.stitch_step * scale if stitch and config.stitch else 0.0,
        "per-frame work": costs.per_frame * scale,
    }
    stages = {"start-up": costs.start}
    if kind == "text":
        stages["free-text edit"] = config.edit.text.steps * costs.text_step * scale
    elif kind == "text-nada":
        stages["free-text style"] = config.edit.nada.steps * costs.nada_step * scale
    stages["PTI"] = per_frame["PTI"] * frames
    stages["phase 1"] = pair_count(cons, frames, cons.phase1.epochs) * per_pair if p1 else 0.0
    stages["phase 2"] = pair_count(cons, frames, cons.phase2.epochs) * per_pair if p2 else 0.0
    stages["stitching"] = per_frame["stitching"] * frames
    stages["per-frame work"] = per_frame["per-frame work"] * frames
    seconds = int(-(-sum(stages.values()) * costs.margin // 1))
    return GpuEstimate(stages, seconds, sum(per_frame.values()) * costs.margin, frames, costs.margin)


@dataclass(frozen=True)
class MeasuredRun:
    """One measured in-domain run (e.g. the GPU rehearsal's mapper edit): stage seconds and the work they did.

    ``invert`` covers the encoder and PTI, ``edit`` the direct edit, ``consistency`` phases 1 and 2 (with the input
    flows), ``stitch`` phase 3. ``consistency_config`` gives the pairs per step and epochs."""

    frames: int
    size: int
    pti_passes: int
    stitch_steps: int
    consistency_config: ConsistencyConfig
    invert: float
    edit: float
    consistency: float
    stitch: float
    start: float | None = None  # model loading, where measured


def fit_costs(run: MeasuredRun, base: GpuCosts = GpuCosts(), source: str = "measured") -> GpuCosts:
    """Per-unit costs from ``run``: each stage's seconds over the units ``estimate_gpu`` counts for it, at
    ``base.reference_side`` (a smaller generator's times are scaled up by its pixel count). Stages that did not run
    (0 s) or did no work keep ``base``'s value. ``estimate_gpu`` with the result gives back ``run``'s PTI, phase 1 + 2 and stitching
    times (before the margin); the encoder's time is counted into PTI's."""
    scale = (run.size / base.reference_side) ** 2
    frames = max(1, int(run.frames))
    cons = run.consistency_config
    pairs = pair_count(cons, frames, cons.phase1.epochs) + pair_count(cons, frames, cons.phase2.epochs)
    values: dict[str, Any] = {"source": source}
    if run.pti_passes > 0 and run.invert > 0:
        values["pti_frame_pass"] = run.invert / (run.pti_passes * frames * scale)
    if pairs > 0 and run.consistency > 0:
        values["consistency_pair"] = run.consistency / (pairs * scale)
    if run.stitch_steps > 0 and run.stitch > 0:
        values["stitch_step"] = run.stitch / (run.stitch_steps * frames * scale)
    # the run's per-frame work is the direct edit only (no metrics): never below the model's own figure
    values["per_frame"] = max(base.per_frame, run.edit / (frames * scale))
    if run.start is not None:
        values["start"] = run.start
    return replace(base, **{k: v if k == "source" else max(float(v), 1e-6) for k, v in values.items()})


__all__ = ["COSTS_ENV", "GpuCosts", "GpuEstimate", "MeasuredRun", "estimate_gpu", "fit_costs", "pair_count"]

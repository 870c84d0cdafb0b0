"""Gradio-only helpers of the app (``app.py``): event handlers over a ``Service``, error messages, ZeroGPU.

The only module of the package that imports gradio. No tensor work here: everything numeric comes from
``tcve.service`` / ``tcve.pipeline`` results.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from .edit import EditSpec
from .errors import Cancelled, CheckpointFormatError, CheckpointUnavailable, NoFaceFound, TcveError, VideoError
from .pipeline import STAGE_WEIGHTS, AlignedClip, EditedClip, PipelineResult
from .service import SETTINGS, RunPlan, Service, check_trim, resolve_preset
from .video import probe

log = logging.getLogger(__name__)

OOM_MESSAGE = ("Out of memory. Retry with fewer frames (lower the frame cap or trim the clip), the Preview preset, "
               "or lower advanced settings (pairs per step, PTI passes).")

# The parameters of the /edit and /stylize endpoints, in the order of their input components.
# ``queue_ticket`` (last, optional) is what the app's ``submitted`` step handed out when the job was queued.
EDIT_PARAMS = ("video", "edit", "text", "source_text", "strength", "preset", "start", "end", "max_frames",
               "stride", "max_side", "advanced", *(s.key for s in SETTINGS), "queue_ticket")
MAX_CANCELLED_SESSIONS = 4096  # sessions whose last cancel is remembered (the oldest are forgotten first)


# An absolute path in a message (POSIX, or a Windows drive path): the app shows its last part only.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.])(?:[A-Za-z]:\\|/)(?:[^\s'\"`:,;()]+[/\\])+([^\s'\"`:,;()/\\]*)")


def without_paths(text: str) -> str:
    """``text`` with every absolute server path replaced by its file name (the server's layout is not the user's
    business, and may be sensitive)."""
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1) or "(folder)", text)


def error_message(exc: BaseException) -> str:
    """A plain message for the UI (never a traceback, never a server path)."""
    if isinstance(exc, (CheckpointUnavailable, CheckpointFormatError)):
        return without_paths(f"Checkpoint unavailable. {exc}")
    if isinstance(exc, (NoFaceFound, VideoError, TcveError)):
        return without_paths(str(exc))
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc):
        return OOM_MESSAGE
    return without_paths(f"Unexpected error ({type(exc).__name__}): {exc}")


def significant(value: Any, digits: int = 4) -> Any:
    """Floats (also inside lists and dicts) rounded to ``digits`` significant digits, for display."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or value == 0:
            return value
        return round(value, digits - 1 - int(math.floor(math.log10(abs(value)))))
    if isinstance(value, dict):
        return {k: significant(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(significant(v, digits) for v in value)
    return value


class EtaEstimator:
    """Seconds left in a run from per-stage measured rates: the rest of the running stage at that stage's own rate
    (seconds per unit of its share of the bar), the stages after it at the mean rate measured so far. A global
    average would sit still through a stage that is slow for its share of the bar (stitching on a CPU)."""

    def __init__(self, weights: Sequence[tuple[str, float]] = STAGE_WEIGHTS,
                 clock: Callable[[], float] = time.perf_counter, min_seconds: float = 2.0) -> None:
        self._end: dict[str, float] = {}
        acc = 0.0
        for name, weight in weights:
            acc += weight
            self._end[name] = acc
        self._clock, self._min = clock, min_seconds
        self._t0 = clock()
        self._stage: str | None = None
        self._stage_t0 = self._t0
        self._stage_f0 = 0.0

    def __call__(self, fraction: float, message: str) -> float | None:
        now = self._clock()
        stage = message.split(":", 1)[0].strip()
        if stage != self._stage:
            self._stage, self._stage_t0, self._stage_f0 = stage, now, fraction
        if stage not in self._end or not 0.0 < fraction < 1.0 or now - self._t0 < self._min:
            return None
        end = max(self._end[stage], fraction)
        done_in_stage = fraction - self._stage_f0
        overall_rate = (now - self._t0) / fraction
        stage_rate = (now - self._stage_t0) / done_in_stage if done_in_stage > 1e-6 else overall_rate
        if now - self._stage_t0 < 0.5 * self._min:  # too little of this stage seen yet: its rate is noise
            stage_rate = overall_rate
        return stage_rate * (end - fraction) + overall_rate * (1.0 - end)


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds >= 90:
        return f", about {seconds / 60:.0f} min left"
    return f", about {max(1, round(seconds)):.0f} s left"


def with_params(fn: Callable[[dict[str, Any], gr.Request | None, gr.Progress], Any],
                names: Sequence[str]) -> Callable[..., Any]:
    """``fn(values, request, progress)`` as a handler whose signature names each input (the API's parameter names),
    followed by gradio's special ``request`` and ``progress`` arguments."""

    def handler(*args: Any) -> Any:
        n = len(names)
        return (yield from fn(dict(zip(names, args[:n])), args[n], args[n + 1]))

    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
    params.append(inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=gr.Request))
    params.append(inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=gr.Progress()))
    handler.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    handler.__annotations__ = {"request": gr.Request}
    handler.__name__ = getattr(fn, "__name__", "handler")
    return handler


def on_gpu(fn: Callable[..., Any], duration: Callable[..., int], zerogpu: bool) -> Callable[..., Any]:
    """On ZeroGPU, ``fn`` as a ``@spaces.GPU`` call (``duration``: seconds from ``fn``'s arguments); elsewhere ``fn``.

    The call runs in a forked worker that holds the GPU: its arguments and result are pickled across."""
    if not zerogpu:
        return fn
    try:
        import spaces  # type: ignore[import-not-found]  # app.py imported it before torch; this is the same module
    except ImportError:
        raise RuntimeError("This Space runs on ZeroGPU (SPACES_ZERO_GPU is set) but the `spaces` package is "
                           "missing: install requirements.txt.") from None
    return spaces.GPU(duration=duration)(fn)


def _number(value: Any, default: float | None = None) -> float | None:
    try:
        return float(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


@dataclass
class Outputs:
    """What one edit returns to the UI, in the order of ``Runner.output_components``."""

    face: Any = None
    edited: Any = None
    direct: Any = None
    side_by_side: Any = None
    files: Any = None
    table: Any = None
    curves: Any = None
    xt: Any = None
    metrics: Any = None
    status: Any = None

    def values(self) -> tuple[Any, ...]:
        return (self.face, self.edited, self.direct, self.side_by_side, self.files, self.table, self.curves, self.xt,
                self.metrics, self.status)


METRIC_COLUMNS = ("video", "E_warp", "LPIPS to direct", "TL-ID", "TG-ID", "ID-sim")


def metrics_table(result: PipelineResult) -> list[list[Any]]:
    """Rows ``METRIC_COLUMNS`` for every measured output (identity scores None where not measured)."""
    m = result.metrics
    rows = []
    for name in ("input", "direct", "consistent", "smoothing"):
        key = f"warping_error_{name}"
        if key in m:
            lp = m.get(f"lpips_to_direct_{name}", 0.0 if name == "direct" else None)
            ids = [m.get(f"{k}_{name}") for k in ("tl_id", "tg_id", "id_sim")]
            rows.append([name, significant(float(m[key])), None if lp is None else significant(float(lp)),
                         *(None if v is None else significant(float(v)) for v in ids)])
    return rows


def curves_frame(result: PipelineResult) -> Any:
    """Per-pair warping error of each output, long format for ``gr.LinePlot``."""
    import pandas as pd  # a gradio dependency

    rows = [{"pair": i, "warping error": significant(float(v)), "video": name}
            for name, values in result.curves.items() for i, v in enumerate(values)]
    return pd.DataFrame(rows, columns=["pair", "warping error", "video"])


def status_text(result: PipelineResult, seconds: float) -> str:
    m = result.metrics
    what = f"{result.info.n_frames} frames at {float(result.info.fps):g} fps"
    if getattr(result, "cached", False):
        lines = [f"Cached result (the same clip and settings ran before; served in {seconds:.1f} s): {what}."]
    else:
        lines = [f"Done in {seconds:.1f} s: {what}."]
    if "warping_error_direct" in m and "warping_error_consistent" in m:
        lines.append(f"E_warp direct {m['warping_error_direct']:.3g} -> "
                     f"consistent {m['warping_error_consistent']:.3g}.")
    lines.extend(without_paths(message) for message in result.messages)
    times = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    lines.append(f"Stage times of the original run: {times}." if getattr(result, "cached", False)
                 else f"Stage times: {times}.")
    return "\n\n".join(lines)


class Runner:
    """The app's handlers over one ``Service``: edit (with progress, a face preview first, cancel) and cancel."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self._cancel: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        # Cancel while queued: the button's click first takes a numbered ticket (a step outside the queue,
        # ``submitted``) that travels with the job's inputs; Cancel drops every job of its session whose ticket was
        # handed out before it. Nothing is kept per queued job, so a job the full queue refuses leaves nothing behind.
        self._tickets = itertools.count(1)
        self._cancelled_upto: dict[str, int] = {}
        # One run at a time, even when a cancelled run's thread is still finishing its current step.
        self._device = threading.Lock()
        self._on_device = on_gpu(self._edit_on_device, self._duration, service.zerogpu)

    # ---------------------------------------------------------------- cancel
    def _event(self, key: str) -> threading.Event:
        with self._lock:
            return self._cancel.setdefault(key, threading.Event())

    def submitted(self) -> int:
        """Called outside the queue when an edit is queued (before it waits for its turn): the job's ticket."""
        with self._lock:
            return next(self._tickets)

    def _dropped(self, session: str, ticket: Any) -> bool:
        """Whether the job starting now was cancelled while it waited in the queue. A job without a ticket (0: an
        API client that did not take one from ``/queue_ticket``) cannot be told apart from a later one: it runs."""
        number = _number(ticket, 0.0) or 0.0
        with self._lock:
            return 1 <= number <= self._cancelled_upto.get(session, 0)

    def cancel(self, request: gr.Request) -> str:
        session = getattr(request, "session_hash", None) or ""
        with self._lock:
            self._cancelled_upto.pop(session, None)  # re-inserted last: the dict stays in order of last cancel
            self._cancelled_upto[session] = next(self._tickets)
            while len(self._cancelled_upto) > MAX_CANCELLED_SESSIONS:
                del self._cancelled_upto[next(iter(self._cancelled_upto))]
        self._event(session).set()
        return "Cancelling: a queued edit is dropped, a running one stops after the current step..."

    # ---------------------------------------------------------------- edit
    @staticmethod
    def _duration(plan: RunPlan, aligned: AlignedClip, progress: gr.Progress, session: str) -> int:
        return plan.estimate.seconds  # the service's cost model; plan() already refused what cannot fit

    @staticmethod
    def _reporter(progress: gr.Progress) -> Callable[[float, str], None]:
        eta = EtaEstimator()

        def report(fraction: float, message: str) -> None:
            progress(fraction, desc=f"{message}{eta_text(eta(fraction, message))}")

        return report

    def _edit_on_device(self, plan: RunPlan, aligned: AlignedClip, progress: gr.Progress,
                        session: str) -> EditedClip:
        # Plain, picklable arguments and result: on ZeroGPU this runs in a worker process, which cancelling cannot
        # reach (the Cancel button then acts once the call returns).
        return self.service.edit_on_device(plan, aligned, self._reporter(progress), self._event(session).is_set)

    def edit_handler(self, domain: str) -> Callable[..., Any]:
        def edit(values: dict[str, Any], request: gr.Request | None, progress: gr.Progress) -> Iterator[tuple]:
            return self._edit(domain, values, request, progress)

        edit.__name__ = "edit" if domain == "in" else "stylize"
        return with_params(edit, EDIT_PARAMS)

    def _spec(self, domain: str, values: dict[str, Any]) -> EditSpec:
        text = (values.get("text") or "").strip()
        name = self.service.free_text_edit(domain) if text else values.get("edit")
        if not name:
            raise gr.Error("Choose an edit or type a text.")
        available = {n: (ok, note) for n, ok, note in self.service.edits(domain)}
        if name not in available:
            raise gr.Error(f"'{name}' is not an edit of this tab.")
        if not available[name][0]:
            raise gr.Error(f"'{name}' is unavailable: {available[name][1]}")
        strength = _number(values.get("strength"))  # None (a direct call of the handler): the edit's own default
        try:
            self.service.check_strength(name, strength)
        except TcveError as exc:
            # The browser narrows the slider to the chosen edit's range; an API call that leaves strength out sends
            # the page's initial value (the first edit's default), which may lie outside another edit's range.
            default = self.service.strength(name)[0]
            raise gr.Error(f"{exc} Through the API, a left-out strength is the page's initial slider value: pass "
                           f"strength={default:g} for the default of '{name}'.", print_exception=False) from None
        return EditSpec(name, strength, text, (values.get("source_text") or "").strip())

    def _edit(self, domain: str, values: dict[str, Any], request: gr.Request | None,
              progress: gr.Progress) -> Iterator[tuple]:
        session = getattr(request, "session_hash", None) or ""
        if self._dropped(session, values.get("queue_ticket")):
            raise gr.Error("Cancelled while waiting in the queue: nothing was run.", print_exception=False)
        path = values.get("video")
        if not path:
            raise gr.Error("Upload a video first (or pick an example).")
        spec = self._spec(domain, values)
        start, end = _number(values.get("start"), 0.0) or 0.0, _number(values.get("end")) or None
        cap = int(_number(values.get("max_frames"), 0) or 0) or None
        stride = int(_number(values.get("stride"), 1) or 1)
        max_side = int(_number(values.get("max_side"), 0) or 0) or None
        try:
            preset = resolve_preset(values.get("preset"))
            check_trim(start, end)
            options = self.service.read_options(path, start, end, cap, stride, max_side)
            probe(path, options, limits=None)  # a trim past the clip's end: the CLI's message, before any work
        except TcveError as exc:
            raise gr.Error(error_message(exc), print_exception=False) from None
        overrides = ({s.key: int(_number(values.get(s.key), 0) or 0) for s in SETTINGS}
                     if values.get("advanced") else None)
        session = getattr(request, "session_hash", None) or ""
        self._event(session).clear()
        cancel = self._event(session).is_set
        t0 = time.perf_counter()
        report = self._reporter(progress)
        try:
            # Checks and the GPU-time estimate first: a job ZeroGPU cannot hold is refused before any work.
            config = self.service.config_for(preset, spec, overrides) if overrides else None
            plan = self.service.plan(path, spec, preset, start, end, cap, config, report, stride=stride,
                                     max_side=max_side)
            progress(0.0, desc="detecting and aligning the face")
            face = self.service.preview_face(path, plan.config.read)  # CPU, outside any GPU call
            note = (f" Reserving {plan.estimate.seconds} s of ZeroGPU time (estimate) for "
                    f"{plan.estimate.frames} frames." if self.service.zerogpu else "")
            yield Outputs(face=face, status=f"Face found and aligned (left). Editing...{note}").values()
            with self._device:
                result = self.service.cached(plan)
                if result is None:
                    aligned = self.service.align(plan, report, cancel)  # CPU: checkpoints, frames, landmarks, crops
                    if cancel():
                        raise Cancelled("Cancelled.")
                    edited = self._on_device(plan, aligned, progress, session)  # all GPU work, one call
                    result = self.service.write(plan, aligned, edited, report, cancel)  # CPU: paste-back, encoding
        except gr.Error:
            raise
        except Cancelled:
            raise gr.Error("Cancelled.", print_exception=False) from None
        except Exception as exc:  # noqa: BLE001 - every failure becomes a plain UI message
            log.warning("edit failed", exc_info=not isinstance(exc, TcveError))
            raise gr.Error(error_message(exc), print_exception=False) from None
        seconds = time.perf_counter() - t0
        files = [str(p) for p in (result.output, result.direct, result.side_by_side,
                                  result.output.parent / "metrics.json") if Path(p).exists()]
        xt = [(img, name) for name in result.xt if (img := self.service.xt_image(result, name)) is not None]
        yield Outputs(face=face, edited=str(result.output), direct=str(result.direct),
                      side_by_side=str(result.side_by_side), files=files, table=metrics_table(result),
                      curves=curves_frame(result), xt=xt, metrics=significant(result.summary()["metrics"]),
                      status=status_text(result, seconds)).values()

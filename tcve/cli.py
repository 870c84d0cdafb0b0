"""The command-line interface: ``python -m tcve {list,edit,metrics,evaluate}``.

Exit codes scripts can rely on: 0 success, 2 usage error (bad arguments, unknown edit / preset / setting, a strength
outside the edit's range, trim end before start, an output path that is a directory), 3 bad input (not a video, no
face, too long, a trim past the clip's end), 4 checkpoint unavailable or an edit the active model set lacks,
5 cancelled (Ctrl-C), 6 out of memory, 1 anything unexpected. Usage errors are found before any work starts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from . import checkpoints
from .errors import BadRequest, Cancelled, CheckpointFormatError, CheckpointUnavailable, EditUnavailable, TcveError
from .terminal import (EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_CHECKPOINT, EXIT_OK, EXIT_OUT_OF_MEMORY,  # noqa: F401
                       EXIT_UNEXPECTED, EXIT_USAGE, UsageError, native_stderr_silenced, plain, progress_bar)

log = logging.getLogger("tcve")


def _service(args: argparse.Namespace):
    from .service import Service

    if args.models == "auto":
        return Service.from_env()
    return Service(models=args.models, device=args.device)


def _print_edits(args: argparse.Namespace) -> None:
    service = _service(args)
    print(plain(service.banner))
    for domain, title in (("in", "in-domain edits"), ("out", "out-of-domain styles")):
        rows = service.edits(domain)
        width = max(len(r[0]) for r in rows)
        print(f"\n{title} (--domain {domain}):")
        for name, ok, note in rows:
            print(f"  {name:<{width}}  {'yes' if ok else 'no':<3}  {plain(note)}")


def _cmd_list(args: argparse.Namespace) -> int:
    if args.kind is not None and args.what == "all":
        args.what = "checkpoints"  # `list --kind K` lists checkpoints of that kind, as before
    if args.what in ("edits", "all"):
        _print_edits(args)
        if args.what == "all":
            print()
    if args.what == "edits":
        return EXIT_OK
    rows = [
        (c.name, c.kind, "cached" if checkpoints.is_cached(c.name) else "-", c.location)
        for c in checkpoints.REGISTRY.values()
        if args.kind is None or c.kind == args.kind
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'checkpoint':<{width}}  {'kind':<10} {'local':<7} location")
    for name, kind, cached, location in rows:
        print(f"{name:<{width}}  {kind:<10} {cached:<7} {location}")
    return EXIT_OK


def _parse_settings(items: Sequence[str]) -> dict[str, int]:
    from .service import SETTINGS

    known = {s.key for s in SETTINGS}
    out: dict[str, int] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--set expects KEY=VALUE, got '{item}'.")
        try:
            out[key.strip()] = int(value)
        except ValueError:
            raise UsageError(f"--set {key}: '{value}' is not an integer.") from None
        if key.strip() not in known:
            raise UsageError(f"Unknown setting '{key}'. Settings: {', '.join(sorted(known))}.")
    return out


def _check_edit_arguments(args: argparse.Namespace) -> None:
    """Usage errors found from the arguments alone, before any model is built or any frame is read."""
    from .service import check_trim

    check_trim(args.start, args.end)
    if args.max_frames is not None and args.max_frames < 1:
        raise UsageError(f"--max-frames must be 1 or more, got {args.max_frames}.")
    source = Path(args.input).resolve()
    for flag, target, suffix in (("-o/--output", args.output, ".mp4"), ("--direct", args.direct, ".mp4"),
                                 ("--compare", args.compare, ".mp4"), ("--metrics", args.metrics, ".json")):
        if not target:
            continue
        path = Path(target)
        if path.is_dir() or str(target).endswith(("/", os.sep)):
            raise UsageError(f"{flag} '{target}' is a directory; give a file name, e.g. {path / ('out' + suffix)}.")
        if path.suffix.lower() != suffix:
            raise UsageError(f"{flag} '{target}' must end in {suffix}.")
        if path.resolve() == source:
            raise UsageError(f"{flag} '{target}' is the input file; choose another name.")
    outputs = [Path(t).resolve() for t in (args.output, args.direct, args.compare) if t]
    if len(set(outputs)) != len(outputs):
        raise UsageError("-o, --direct and --compare must name different files.")


def _cmd_edit(args: argparse.Namespace) -> int:
    from .edit import EDITS, EditSpec
    from .service import resolve_preset

    _check_edit_arguments(args)
    preset = resolve_preset(args.preset)
    service = _service(args)
    if args.text is not None:
        name = service.free_text_edit(args.domain or "in")
    else:
        name = args.edit.strip().lower().replace("_", " ").replace("-", " ")
        if name not in EDITS:
            raise UsageError(f"Unknown edit '{args.edit}'. See `python -m tcve list edits`.")
        if args.domain and EDITS[name].domain != args.domain:
            raise UsageError(f"'{name}' is an {EDITS[name].domain}-domain edit, not --domain {args.domain}.")
    service.require_edit(name)
    service.check_strength(name, args.strength)
    spec = EditSpec(name, args.strength, args.text or "", args.source_text or "")
    overrides = _parse_settings(args.set)
    config = service.config_for(preset, spec, overrides) if overrides else None
    bar, report = progress_bar(not args.quiet)
    # Written into a hidden folder near the output (its nearest existing folder), then moved into place: only the
    # files asked for remain, and nothing at all when the run fails or is stopped (Ctrl-C, SIGTERM).
    near = next(p for p in Path(args.output).resolve().parents if p.is_dir())  # nothing is created before success
    with tempfile.TemporaryDirectory(prefix=".tcve-", dir=near) as work:
        try:
            result = service.run(args.input, spec, preset, args.start, args.end, args.max_frames, config,
                                 report, stride=args.stride, max_side=args.max_side, output_dir=work)
        finally:
            bar.close()
        for message in result.messages:  # faces, misses, cuts, which network: the user's business, not stdout's
            print(f"note: {plain(message)}", file=sys.stderr)
        copies = [(result.output, args.output), (result.direct, args.direct), (result.side_by_side, args.compare)]
        for source, target in copies:
            if target:
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                shutil.move(source, target)
    summary = result.summary()
    summary.update(output=str(args.output), direct=args.direct, side_by_side=args.compare, edit=name)
    if args.metrics:
        Path(args.metrics).parent.mkdir(parents=True, exist_ok=True)
        Path(args.metrics).write_text(json.dumps(summary, indent=2))
    m = result.metrics
    print(f"wrote {args.output} ({result.info.n_frames} frames, {float(result.info.fps):g} fps)")
    if "warping_error_direct" in m and "warping_error_consistent" in m:
        print(f"E_warp direct {m['warping_error_direct']:.4g}  consistent {m['warping_error_consistent']:.4g}  "
              f"LPIPS to direct {m.get('lpips_to_direct_consistent', float('nan')):.4g}")
    if "tl_id_consistent" in m:
        print(f"TL-ID direct {m['tl_id_direct']:.4f}  consistent {m['tl_id_consistent']:.4f}  "
              f"TG-ID consistent {m['tg_id_consistent']:.4f}  ID-sim consistent {m['id_sim_consistent']:.4f}")
    return EXIT_OK


def _cmd_metrics(args: argparse.Namespace) -> int:
    service = _service(args)
    values = service.measure(args.video, args.reference, args.direct, args.size)
    text = json.dumps(values, indent=2)
    if args.json:
        Path(args.json).write_text(text)
    print(text)
    return EXIT_OK


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import run_from_args

    return run_from_args(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tcve", description="Temporally consistent face video editing.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    def add_models(p: argparse.ArgumentParser) -> None:
        p.add_argument("--models", choices=("auto", "ffhq", "demo", "tiny"), default="auto",
                       help="network set (auto: $TCVE_MODELS, else ffhq when its checkpoints are cached or the Hub "
                            "answers, else the bundled demo pack, else tiny)")
        p.add_argument("--device", default=os.environ.get("TCVE_DEVICE", "auto"), help="auto | cpu | cuda[:N]")

    listing = sub.add_parser("list", help="list edits, styles and checkpoints (and which are cached locally)")
    listing.add_argument("what", nargs="?", choices=("all", "edits", "checkpoints"), default="all")
    listing.add_argument("--kind", choices=sorted({c.kind for c in checkpoints.REGISTRY.values()}),
                         help="only checkpoints of this kind")
    add_models(listing)
    listing.set_defaults(run=_cmd_list)

    edit = sub.add_parser("edit", help="edit the face of a video")
    edit.add_argument("input", help="input video")
    edit.add_argument("-o", "--output", required=True, help="the consistent edit (mp4, with the input's audio)")
    which = edit.add_mutually_exclusive_group(required=True)
    which.add_argument("--edit", help="a catalogue edit or style (see `list edits`)")
    which.add_argument("--text", help="free text: an in-domain edit, or a style with --domain out")
    edit.add_argument("--source-text", help="free text: what the face is now (default 'face' / 'photo')")
    edit.add_argument("--domain", choices=("in", "out"), help="in-domain edit or out-of-domain style")
    edit.add_argument("--strength", type=float, help="edit strength (default: the edit's own)")
    edit.add_argument("--preset", default="preview",
                      help="preview (the default: the first 8 frames only, light settings) | fast (official settings "
                           "with 8 pairs per step and bf16) | paper (the whole clip up to the 900-frame limit, the "
                           "official settings); case does not matter. A cut is always said on stderr")
    edit.add_argument("--start", type=float, default=0.0, help="trim: first second")
    edit.add_argument("--end", type=float, help="trim: last second (exclusive)")
    edit.add_argument("--max-frames", type=int, help="frame cap (the preset's cap applies too)")
    edit.add_argument("--stride", type=int, default=1, help="keep every N-th frame (the output fps is divided by N)")
    edit.add_argument("--max-side", type=int, help="downscale so the longest side is at most this many pixels")
    edit.add_argument("--set", action="append", default=[], metavar="KEY=N",
                      help="advanced setting, e.g. --set stitch_steps=0 (keys: pti_steps, phase1_epochs, "
                           "phase2_epochs, pairs_per_step, stitch_steps, text_steps, nada_steps)")
    edit.add_argument("--compare", help="also write input | direct | consistent side by side here")
    edit.add_argument("--direct", help="also write the direct per-frame edit here")
    edit.add_argument("--metrics", help="write the metrics (JSON) here")
    edit.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_models(edit)
    edit.set_defaults(run=_cmd_edit)

    metrics = sub.add_parser("metrics", help="warping error, LPIPS and identity (TL-ID, TG-ID, ID-sim) of a video")
    metrics.add_argument("video")
    metrics.add_argument("--reference", required=True, help="the input clip: its flows define E_warp")
    metrics.add_argument("--direct", help="LPIPS is measured to this video (default: to the reference)")
    metrics.add_argument("--size", type=int, default=256, help="frames are resized to SIZE x SIZE")
    metrics.add_argument("--json", help="also write the numbers here")
    add_models(metrics)
    metrics.set_defaults(run=_cmd_metrics)

    from .evaluate import add_arguments as add_evaluate_arguments

    evaluate = sub.add_parser("evaluate", help="the paper's tables: E_warp and LPIPS of every method on clips x edits")
    add_evaluate_arguments(evaluate)
    evaluate.set_defaults(run=_cmd_evaluate)
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C: half-written outputs are removed on the way out


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
    try:
        # Native libraries' log lines would break into the progress bar; --verbose keeps them.
        with native_stderr_silenced(not args.verbose):
            logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                                format="%(levelname)s %(message)s")
            return _run(args)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _run(args: argparse.Namespace) -> int:
    try:
        return args.run(args)
    except BadRequest as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (CheckpointUnavailable, CheckpointFormatError, EditUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CHECKPOINT
    except Cancelled as exc:
        print(f"cancelled: {exc}", file=sys.stderr)
        return EXIT_CANCELLED
    except TcveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        from .edit import UnknownEdit

        return EXIT_USAGE if isinstance(exc, (UsageError, UnknownEdit)) else EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return EXIT_CANCELLED
    except MemoryError:
        print("error: out of memory: retry with fewer frames (--max-frames) or lighter settings", file=sys.stderr)
        return EXIT_OUT_OF_MEMORY
    except Exception as exc:  # noqa: BLE001 - CUDA OOM without importing torch here
        if type(exc).__name__ == "OutOfMemoryError":
            print("error: out of memory: retry with fewer frames (--max-frames) or lighter settings", file=sys.stderr)
            return EXIT_OUT_OF_MEMORY
        raise

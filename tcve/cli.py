"""The command-line interface: ``python -m tcve {list,edit,metrics}``.

Exit codes scripts can rely on: 0 success, 2 usage error, 3 bad input (not a video, no face, too long),
4 checkpoint unavailable, 5 cancelled, 1 anything unexpected.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from . import checkpoints
from .errors import CheckpointFormatError, CheckpointUnavailable, TcveError

log = logging.getLogger("tcve")

EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_CHECKPOINT, EXIT_CANCELLED = 0, 1, 2, 3, 4, 5


def _cmd_list(args: argparse.Namespace) -> int:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tcve", description="Temporally consistent face video editing.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="list checkpoints (and whether they are cached locally)")
    listing.add_argument("--kind", choices=sorted({c.kind for c in checkpoints.REGISTRY.values()}))
    listing.set_defaults(run=_cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return args.run(args)
    except (CheckpointUnavailable, CheckpointFormatError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CHECKPOINT
    except TcveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CANCELLED if type(exc).__name__ == "Cancelled" else EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return EXIT_CANCELLED

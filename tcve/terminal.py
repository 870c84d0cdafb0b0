"""What every command of ``python -m tcve`` shares on a terminal: exit codes, the usage error, the progress bar.

Its own module so that the commands (``tcve.cli``, ``tcve.evaluate``) depend on it and never on each other.
"""

from __future__ import annotations

import sys
from typing import Any

from .errors import TcveError

EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_CHECKPOINT, EXIT_CANCELLED = 0, 1, 2, 3, 4, 5
EXIT_OUT_OF_MEMORY = 6


class UsageError(TcveError):
    """Arguments that parse but make no sense together (exit code 2)."""


def progress_bar(enabled: bool) -> tuple[Any, Any]:
    """A ``progress(fraction, message)`` drawing one tqdm bar on stderr (stage names in its description)."""
    from tqdm import tqdm

    bar = tqdm(total=1000, unit="", bar_format="{desc:<48} {percentage:3.0f}%|{bar}| {elapsed}<{remaining}",
               disable=not enabled, file=sys.stderr, dynamic_ncols=True, delay=1.0)

    def report(fraction: float, message: str) -> None:
        bar.n = int(1000 * max(0.0, min(1.0, fraction)))
        bar.set_description_str(message[:48], refresh=False)
        bar.refresh()

    return bar, report

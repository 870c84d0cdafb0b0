"""What every command of ``python -m tcve`` shares on a terminal: exit codes, the usage error, the progress bar.

Its own module so that the commands (``tcve.cli``, ``tcve.evaluate``) depend on it and never on each other.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

from .errors import BadRequest

EXIT_OK, EXIT_UNEXPECTED, EXIT_USAGE, EXIT_BAD_INPUT, EXIT_CHECKPOINT, EXIT_CANCELLED = 0, 1, 2, 3, 4, 5
EXIT_OUT_OF_MEMORY = 6


class UsageError(BadRequest):
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


def plain(text: str) -> str:
    """Markdown emphasis and code marks removed: what a terminal should print of a message written for the app."""
    return re.sub(r"(\*\*|__|`)", "", text)


@contextlib.contextmanager
def native_stderr_silenced(enabled: bool = True) -> Iterator[None]:
    """Send what native libraries write straight to file descriptor 2 (MediaPipe's TF-Lite and absl log lines,
    printed from their own threads) to /dev/null, while Python's ``sys.stderr`` (progress bar, messages, logging)
    keeps the real terminal. Environment variables cannot do this: TF-Lite's "INFO: Created ... delegate" line and
    absl's pre-initialisation warnings ignore them."""
    if not enabled:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real descriptor 2 (embedded interpreters): nothing to do
        yield
        return
    python_stderr = sys.stderr
    try:
        on_descriptor_2 = python_stderr.fileno() == 2
    except (AttributeError, OSError, ValueError):  # e.g. an in-memory stream: it stays where it writes
        on_descriptor_2 = False
    terminal = None
    if on_descriptor_2:
        terminal = open(saved, "w", buffering=1, encoding=getattr(python_stderr, "encoding", None) or "utf-8",
                        errors="backslashreplace", closefd=False)
        sys.stderr = terminal
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        if terminal is not None:
            terminal.flush()
            sys.stderr = python_stderr
            terminal.close()
        os.dup2(saved, 2)
        os.close(saved)

"""Where a benchmark's results land: ``results.md`` (the tables), ``results.csv`` (one line per row) and
``command.txt`` (the command that made them), in one folder. Shared by ``tcve evaluate`` and the ground-truth
benchmark, so every committed table has its command beside it in the same shape."""

from __future__ import annotations

from pathlib import Path

RESULT_FILES = ("results.md", "results.csv", "command.txt")


def write_results(out_dir: str | Path, markdown: str, csv: str, command: str) -> list[Path]:
    """Write the three files into ``out_dir`` (created if missing); returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / name for name in RESULT_FILES]
    for path, text in zip(paths, (markdown, csv, command if command.endswith("\n") else command + "\n")):
        path.write_text(text)
    return paths

"""The paper's evaluation tables (Tables 1-3) on a folder of clips: ``python -m bench.evaluate --clips DIR ...``.

The same command as ``python -m tcve evaluate`` (arguments: ``--help``); see ``tcve.evaluate`` for what is measured.
Examples, from the repository root:

    python -m bench.evaluate --clips examples --models tiny --edits smile,sketch --max-frames 8 --preset fast
    python -m bench.evaluate --clips ravdess/ --models ffhq --out-dir results/ravdess          # the paper's protocol
    python -m bench.evaluate --clips ravdess/ --models ffhq --ray-address auto --out-dir results/ravdess  # on Ray
"""

from __future__ import annotations

import sys

from tcve.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))

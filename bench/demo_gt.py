"""The ground-truth benchmark of the demo pack: ``python -m bench.demo_gt --out-dir bench/results/demo-gt``.

Every method's distance to the true edited video (rendered by the demo renderer), besides E_warp, LPIPS to the direct
edit, identity consistency and seconds; see ``tcve.gt_benchmark``. Arguments: ``--help``. The committed table's
command is in ``bench/results/demo-gt/command.txt``.
"""

from __future__ import annotations

import sys

from tcve.gt_benchmark import main

if __name__ == "__main__":
    sys.exit(main())

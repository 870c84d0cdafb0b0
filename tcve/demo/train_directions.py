"""Fit InterFaceGAN-style W directions of the demo generator from ground-truth labels (seconds on a CPU).

The glo stage of train_generator leaves one W code per training render together with the render's attributes, so
no classifier is needed to label samples: each direction is the normal of a linear fit of the attribute on the
codes (ridge regression on the continuous value), unit-normalised, optionally made orthogonal to the normals of
attributes it must not drag along (InterFaceGAN's conditional manipulation).

Files: `weights/directions/<name>.npy`, shape [1, style_dim] float32 (InterFaceGAN's boundary layout), and
`weights/directions/directions.json` with the spread of the codes along each direction (std of w . n), from which
edit strengths are chosen (a strength of 2 std moves a typical face well across the attribute's range).

    python -m tcve.demo.train_directions
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..models.serialization import load_torch_file
from .train_common import WEIGHTS_DIR, log_setup, parse_config
from .train_generator import codes_path

logger = logging.getLogger(__name__)

# direction name -> (attribute it follows, attributes whose normals it is made orthogonal to)
DIRECTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "smile": ("smile", ("mouth_open", "yaw")),
    "age": ("age", ("hair_color", "yaw")),
    "mouth_open": ("mouth_open", ("smile",)),
    "yaw": ("yaw", ()),
}


@dataclass(frozen=True)
class DirectionsConfig:
    out_dir: str = str(WEIGHTS_DIR / "directions")
    work_dir: str = "/tmp/tcve-demo-work"
    ridge: float = 1e-2  # relative to the mean code variance
    holdout: float = 0.2  # share of codes kept out of the fit to measure how well the direction predicts


def fit_normal(codes: np.ndarray, target: np.ndarray, ridge: float) -> np.ndarray:
    """Unit normal [D] of the ridge regression target ~ codes."""
    x = codes - codes.mean(0)
    y = target - target.mean()
    reg = ridge * x.var(0).mean() * len(x)
    beta = np.linalg.solve(x.T @ x + reg * np.eye(x.shape[1]), x.T @ y)
    return beta / np.linalg.norm(beta)


def orthogonalise(n: np.ndarray, others: Sequence[np.ndarray]) -> np.ndarray:
    """n minus its components along `others` (Gram-Schmidt over the span of `others`), re-normalised."""
    if not others:
        return n
    q, _ = np.linalg.qr(np.stack(others, 1))
    n = n - q @ (q.T @ n)
    return n / np.linalg.norm(n)


def train(config: DirectionsConfig) -> dict[str, dict[str, float]]:
    data = load_torch_file(codes_path(config.work_dir))
    codes = data["codes"].numpy().astype(np.float64)
    attrs = data["attributes"].numpy().astype(np.float64)
    names = list(data["attribute_names"])
    rng = np.random.default_rng(0)
    order = rng.permutation(len(codes))
    n_fit = int(len(codes) * (1 - config.holdout))
    fit, held = order[:n_fit], order[n_fit:]
    raw = {a: fit_normal(codes[fit], attrs[fit, names.index(a)], config.ridge)
           for a in {a for a, _ in DIRECTIONS.values()} | {o for _, os in DIRECTIONS.values() for o in os}}
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta: dict[str, dict[str, float]] = {}
    for name, (attribute, avoid) in DIRECTIONS.items():
        n = orthogonalise(raw[attribute], [raw[a] for a in avoid])
        proj = codes @ n
        # how well the projection predicts the attribute on held-out codes (correlation)
        corr = float(np.corrcoef(proj[held], attrs[held, names.index(attribute)])[0, 1])
        if corr < 0:  # point the direction towards more of the attribute
            n, proj, corr = -n, -proj, -corr
        np.save(out / f"{name}.npy", n[None].astype(np.float32))
        meta[name] = {"attribute": attribute, "orthogonal_to": list(avoid), "projection_std": float(proj.std()),
                      "heldout_correlation": corr}
        logger.info("%s: held-out correlation %.3f, projection std %.3f", name, corr, proj.std())
    (out / "directions.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main(argv: Sequence[str] | None = None) -> None:
    log_setup()
    meta = train(parse_config(DirectionsConfig, argv, __doc__ or ""))
    for name, m in meta.items():
        print(f"{name}: corr={m['heldout_correlation']:.3f} std={m['projection_std']:.3f}")


if __name__ == "__main__":
    main()

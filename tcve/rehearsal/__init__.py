"""The FFHQ rehearsal: full-size random-weight checkpoints in the published layouts, in real hub caches.

``build(root, names)`` writes every named registry entry with random weights (``layouts``), files it where a Space's
``huggingface_hub`` / torch.hub would have downloaded it (``hub_cache``: ``root/hf/hub``, ``root/torch/hub``) and
writes ``root/manifest.json`` with the files' sha256 and sizes for ``$TCVE_CHECKPOINT_MANIFEST``. ``Rehearsal.env()``
is the environment under which ``tcve.checkpoints.fetch`` finds them through ``hf_hub_download`` offline, with no
``$TCVE_CHECKPOINT_DIR``. An existing cache for the same names is reused (checked by size).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .. import checkpoints
from . import hub_cache, layouts

log = logging.getLogger(__name__)

LAYOUT_VERSION = 1
# What the ffhq model set needs to run every edit kind: the service's networks, one StyleCLIP mapper, every hosted
# direction file, NADA styles and CLIP.
CORE = ("stylegan2-ffhq-1024", "e4e-ffhq", "lpips-alex-backbone", "raft-large-things")
DEFAULT_NAMES = (*CORE, "mapper-angry", "mapper-surprised", "directions-styleganex",
                 *(n for n in checkpoints.names("direction") if n.startswith("interfacegan-")),
                 "nada-sketch", "nada-pixar", "nada-zombie", "clip-vit-b-32")
# The reduced set of the CI test: one of each kind.
CI_NAMES = (*CORE, "mapper-angry", "directions-styleganex",
            *(n for n in checkpoints.names("direction") if n.startswith("interfacegan-")),
            "nada-sketch", "nada-pixar", "clip-vit-b-32")
# Every hosted entry the ffhq set can use (all 14 mappers, all 25 styles: ~6.5 GB).
ALL_NAMES = tuple(n for n in checkpoints.names() if layouts.supported(n) and n not in {
    "stylegan2-ffhq-1024-nvlabs", "psp-ffhq", "styleclip-fs3", "lpips-vgg-backbone", "bisenet-faceparsing"})


@dataclass(frozen=True)
class Rehearsal:
    root: Path
    files: dict[str, Path]  # registry name -> where fetch will find it
    manifest: dict[str, dict[str, object]]  # registry name -> {'sha256', 'size'}
    seconds: float = 0.0  # time spent writing (0 when reused)

    @property
    def hub_cache(self) -> Path:
        return self.root / "hf" / "hub"

    @property
    def torch_home(self) -> Path:
        return self.root / "torch"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    def env(self) -> dict[str, str]:
        """The environment of a run on these files (offline, as on a machine without Hub access)."""
        return {"HF_HOME": str(self.root / "hf"), "HF_HUB_CACHE": str(self.hub_cache),
                "TORCH_HOME": str(self.torch_home), checkpoints.ENV_CHECKPOINT_MANIFEST: str(self.manifest_path),
                "HF_HUB_OFFLINE": "1"}

    @property
    def total_bytes(self) -> int:
        return sum(int(v["size"]) for v in self.manifest.values())


def _reusable(root: Path, names: Iterable[str]) -> Rehearsal | None:
    index = root / "rehearsal.json"
    if not index.is_file():
        return None
    try:
        data = json.loads(index.read_text())
    except ValueError:
        return None
    if data.get("version") != LAYOUT_VERSION:
        return None
    files = {k: Path(v) for k, v in data.get("files", {}).items()}
    manifest = data.get("manifest", {})
    for name in names:
        if name not in files or name not in manifest or not files[name].is_file():
            return None
        if files[name].stat().st_size != manifest[name]["size"]:
            return None
    return Rehearsal(root, files, manifest)


def build(root: str | Path, names: Iterable[str] = DEFAULT_NAMES,
          progress: Callable[[str], None] | None = None) -> Rehearsal:
    """Write (or reuse) random-weight files for ``names`` under ``root``; see the module docstring."""
    root = Path(root).resolve()
    names = tuple(dict.fromkeys(names))
    bad = [n for n in names if not layouts.supported(n)]
    if bad:
        raise ValueError(f"the rehearsal cannot write {bad} (local-only entries or formats without a writer)")
    reused = _reusable(root, names)
    if reused is not None:
        return reused
    report = progress or (lambda message: log.info(message))
    t0 = time.perf_counter()
    files: dict[str, Path] = {}
    manifest: dict[str, dict[str, object]] = {}
    staging = root / "staging"
    staging.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        ckpt = checkpoints.get(name)
        t = time.perf_counter()
        tmp = layouts.write_entry(ckpt, staging / f"{name}{Path(ckpt.filename).suffix}", layouts.entry_seed(name))
        size = tmp.stat().st_size
        digest = checkpoints.file_sha256(tmp)
        if ckpt.repo_id:
            path = hub_cache.add_to_hub_cache(root / "hf" / "hub", ckpt.repo_id, ckpt.filename, tmp, ckpt.repo_type,
                                              ckpt.revision, sha256=digest)
        else:
            path = hub_cache.add_to_torch_hub(root / "torch", ckpt.filename, tmp)
        files[name] = path
        manifest[name] = {"sha256": digest, "size": size}
        report(f"rehearsal file {i + 1}/{len(names)}: {name} ({size / 2**20:.1f} MiB, {time.perf_counter() - t:.1f} s)")
    staging.rmdir()
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    (root / "rehearsal.json").write_text(json.dumps(
        {"version": LAYOUT_VERSION, "files": {k: str(v) for k, v in files.items()}, "manifest": manifest}, indent=1))
    return Rehearsal(root, files, manifest, seconds=time.perf_counter() - t0)


@contextmanager
def activated(rehearsal: Rehearsal) -> Iterator[Rehearsal]:
    """Set ``rehearsal.env()`` (and unset ``$TCVE_CHECKPOINT_DIR``) for the duration of the block."""
    import os

    keys = [*rehearsal.env(), checkpoints.ENV_CHECKPOINT_DIR]
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(rehearsal.env())
    os.environ.pop(checkpoints.ENV_CHECKPOINT_DIR, None)
    try:
        yield rehearsal
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


__all__ = ["Rehearsal", "build", "activated", "DEFAULT_NAMES", "CI_NAMES", "ALL_NAMES", "CORE"]

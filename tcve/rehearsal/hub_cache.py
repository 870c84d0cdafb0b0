"""Lay files out as ``huggingface_hub`` and ``torch.hub`` cache them, so the real lookup code finds them.

Hugging Face cache (``huggingface_hub.file_download``: ``repo_folder_name``, ``_create_symlink``, the ``refs`` lookup
of ``hf_hub_download`` when the Hub cannot be asked)::

    <cache>/models--owner--name/            (spaces--owner--name for a Space)
        blobs/<etag>                         the bytes; for LFS files (all weights) the etag is the file's sha256
        refs/main                            the commit hash the branch points to (no trailing newline)
        snapshots/<commit>/<path in repo>    relative symlink to ../../blobs/<etag> (one more ../ per folder)

``hf_hub_download(..., local_files_only=True)`` (what ``HF_HUB_OFFLINE=1`` amounts to) reads ``refs/<revision>``
(or takes a 40-hex revision as the commit itself) and returns the snapshot path if it exists.
torch.hub keeps torchvision weights flat in ``$TORCH_HOME/hub/checkpoints/<file name of the URL>``.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from ..checkpoints import file_sha256

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def repo_folder(cache_dir: Path, repo_id: str, repo_type: str = "model") -> Path:
    return Path(cache_dir) / "--".join([f"{repo_type}s", *repo_id.split("/")])


def rehearsal_commit(repo_id: str) -> str:
    """A stable, obviously synthetic commit hash per repository."""
    return hashlib.sha1(f"tcve-rehearsal:{repo_id}".encode()).hexdigest()


def add_to_hub_cache(cache_dir: Path, repo_id: str, filename: str, source: Path, repo_type: str = "model",
                     revision: str | None = None, sha256: str | None = None) -> Path:
    """Move ``source`` into the cache as ``filename`` of ``repo_id`` at ``revision`` (default ``main``).

    Returns the snapshot path (what ``hf_hub_download`` will return)."""
    folder = repo_folder(cache_dir, repo_id, repo_type)
    revision = revision or "main"
    commit = revision if _COMMIT.fullmatch(revision) else rehearsal_commit(repo_id)
    etag = sha256 or file_sha256(source)
    blob = folder / "blobs" / etag
    blob.parent.mkdir(parents=True, exist_ok=True)
    if blob.exists():
        Path(source).unlink()
    else:
        os.replace(source, blob)
    pointer = folder / "snapshots" / commit / filename
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if pointer.is_symlink() or pointer.exists():
        pointer.unlink()
    pointer.symlink_to(os.path.relpath(blob, pointer.parent))
    if not _COMMIT.fullmatch(revision):
        ref = folder / "refs" / revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit)
    return pointer


def add_to_torch_hub(torch_home: Path, filename: str, source: Path) -> Path:
    target = Path(torch_home) / "hub" / "checkpoints" / filename
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    return target

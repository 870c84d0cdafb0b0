import hashlib
import time
from dataclasses import replace

import pytest

from tcve import checkpoints
from tcve.errors import CheckpointFormatError, CheckpointUnavailable


def test_every_entry_names_where_it_comes_from():
    assert len(checkpoints.REGISTRY) >= 40
    for ckpt in checkpoints.REGISTRY.values():
        assert ckpt.name == ckpt.name.lower() and " " not in ckpt.name
        assert ckpt.source, ckpt.name
        assert ckpt.repo_type in {"model", "space"}
    # The paper's five out-of-domain styles and its in-domain generator are all downloadable.
    for name in ["nada-sketch", "nada-pixar", "nada-disney-princess", "nada-elf", "nada-zombie", "stylegan2-ffhq-1024",
                 "stylegan2-ffhq-1024-nvlabs", "e4e-ffhq", "mapper-angry", "mapper-surprised", "mapper-depp"]:
        assert checkpoints.get(name).repo_id, name


def test_offline_fetch_fails_fast_with_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv(checkpoints.ENV_CHECKPOINT_DIR, raising=False)
    start = time.perf_counter()
    with pytest.raises(CheckpointUnavailable) as info:
        checkpoints.fetch("e4e-ffhq")
    assert time.perf_counter() - start < 2.0
    message = str(info.value)
    assert "e4e-ffhq" in message and "public-data/e4e" in message and "TCVE_CHECKPOINT_DIR" in message


def test_unknown_and_local_only_names(monkeypatch, tmp_path):
    monkeypatch.delenv(checkpoints.ENV_CHECKPOINT_DIR, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointUnavailable, match="no such checkpoint"):
        checkpoints.fetch("no-such-model")
    with pytest.raises(CheckpointUnavailable, match="mapper-eyeglasses"):
        checkpoints.fetch("mapper-eyeglasses")


def test_local_override_directory_and_explicit_path(monkeypatch, tmp_path):
    payload = b"weights"
    (tmp_path / "e4e_ffhq_encode.pt").write_bytes(payload)
    monkeypatch.setenv(checkpoints.ENV_CHECKPOINT_DIR, str(tmp_path))
    assert checkpoints.fetch("e4e-ffhq") == tmp_path / "e4e_ffhq_encode.pt"
    assert checkpoints.is_cached("e4e-ffhq")
    # Files under their registry path inside the folder are found too.
    nested = tmp_path / "pretrained_models" / "styleclip_mappers"
    nested.mkdir(parents=True)
    (nested / "angry.pt").write_bytes(payload)
    assert checkpoints.fetch("mapper-angry") == nested / "angry.pt"
    with pytest.raises(CheckpointUnavailable, match="no file at"):
        checkpoints.fetch("e4e-ffhq", local_path=tmp_path / "missing.pt")


def test_hash_and_size_are_verified(monkeypatch, tmp_path):
    path = tmp_path / "file.pt"
    path.write_bytes(b"abc")
    good = replace(checkpoints.get("e4e-ffhq"), sha256=hashlib.sha256(b"abc").hexdigest(), size=3)
    assert checkpoints.verify(good, path) == path
    with pytest.raises(CheckpointFormatError, match="sha256"):
        checkpoints.verify(replace(good, sha256="0" * 64), path)
    with pytest.raises(CheckpointFormatError, match="bytes"):
        checkpoints.verify(replace(good, size=4, sha256=None), path)


def test_readme_front_matter_lists_every_model_repo():
    from pathlib import Path

    text = Path(__file__).resolve().parents[1].joinpath("README.md").read_text()
    front = text.split("---")[1]
    listed = {line.strip()[2:] for line in front.splitlines() if line.strip().startswith("- ")}
    expected = {c.repo_id for c in checkpoints.REGISTRY.values() if c.repo_id and c.repo_type == "model"}
    assert listed == expected

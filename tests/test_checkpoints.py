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
    models_block = front.split("\nmodels:", 1)[1]
    listed = set()
    for line in models_block.splitlines()[1:]:
        if not line.strip().startswith("- "):
            break  # the next front-matter key
        listed.add(line.strip()[2:])
    expected = {c.repo_id for c in checkpoints.REGISTRY.values() if c.repo_id and c.repo_type == "model"}
    assert listed == expected


def test_published_hashes_are_recorded_with_their_source():
    hashed = [c for c in checkpoints.REGISTRY.values() if c.sha256]
    assert len(hashed) >= 8
    for ckpt in hashed:
        assert len(ckpt.sha256) == 64 and int(ckpt.sha256, 16) >= 0 and ckpt.sha256 == ckpt.sha256.lower(), ckpt.name
        assert "sha256" in ckpt.source, ckpt.name  # where the hash was read
        assert ckpt.repo_id or ckpt.url, ckpt.name  # only files with a public copy have a published hash
    nvlabs = checkpoints.get("stylegan2-ffhq-1024-nvlabs")
    assert nvlabs.sha256.startswith("a205a346") and nvlabs.size == 381_624_121
    for name in ("nada-pixar", "nada-elf", "nada-zombie"):  # three of the paper's five styles
        assert checkpoints.get(name).sha256, name
    # torchvision files carry their hash prefix in the name; a recorded full hash must agree with it
    prefixed = {c.name: c.sha256_prefix for c in checkpoints.REGISTRY.values() if c.sha256_prefix}
    assert prefixed["raft-large-things"] == "22a6c225" and prefixed["lpips-alex-backbone"] == "7be5be79"
    for name, prefix in prefixed.items():
        full = checkpoints.get(name).sha256
        assert full is None or full.startswith(prefix), name


def test_fetch_verifies_the_hash_of_a_local_file(monkeypatch, tmp_path):
    """A file with the published size but other bytes is refused on fetch (size alone does not catch it)."""
    monkeypatch.setenv(checkpoints.ENV_CHECKPOINT_DIR, str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fake = tmp_path / "pixar.pt"
    with open(fake, "wb") as handle:  # sparse: the right size in no time
        handle.truncate(checkpoints.get("nada-pixar").size)
    with pytest.raises(CheckpointFormatError, match="sha256") as info:
        checkpoints.fetch("nada-pixar")
    assert str(tmp_path) not in str(info.value)  # the file name only
    # torchvision-hosted weights are checked against the prefix in their name
    (tmp_path / "alexnet-owt-7be5be79.pth").write_bytes(b"not alexnet")
    with pytest.raises(CheckpointFormatError, match="7be5be79"):
        checkpoints.fetch("lpips-alex-backbone")


def test_refused_pickle_message_never_advises_weights_only_false(tmp_path):
    import os

    import torch

    from tcve.models.serialization import load_torch_file

    marker = tmp_path / "ran.txt"

    class Hostile:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "hostile.pt"
    torch.save({"state_dict": Hostile()}, path)
    with pytest.raises(CheckpointFormatError) as info:
        load_torch_file(path)
    message = str(info.value)
    assert "weights_only" not in message and "will likely succeed" not in message
    assert "system" in message and "hostile.pt" in message and str(tmp_path) not in message
    assert "never runs code" in message
    assert not marker.exists()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[:40])
    with pytest.raises(CheckpointFormatError, match="corrupt, truncated"):
        load_torch_file(truncated)

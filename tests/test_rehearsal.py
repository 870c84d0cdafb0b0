"""The FFHQ rehearsal: full-size random-weight files in the published layouts, found through hf_hub_download offline,
loaded by the real loaders, and the ffhq model set run end to end at 1024 px (reduced: 3 frames, 1 step per stage).

The cache is written once per module (~2.4 GB in a temporary folder, about a minute) and shared by every test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tcve import checkpoints, rehearsal
from tcve.errors import CheckpointFormatError, CheckpointUnavailable
from tcve.rehearsal import hub_cache

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
FRAMES = 2


def _shapes(sd: dict, prefix: str = "") -> dict[str, list[int]]:
    return {k[len(prefix):]: list(v.shape) for k, v in sd.items() if k.startswith(prefix)}


def _manifest_shapes(name: str) -> dict[str, list[int]]:
    data = json.loads((FIXTURES / name).read_text())["state_dict_shapes"]
    return {k: list(v) for k, v in data.items()}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> rehearsal.Rehearsal:
    return rehearsal.build(tmp_path_factory.mktemp("rehearsal"), rehearsal.CI_NAMES)


@pytest.fixture()
def offline_env(cache: rehearsal.Rehearsal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> rehearsal.Rehearsal:
    for key, value in cache.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv(checkpoints.ENV_CHECKPOINT_DIR, raising=False)
    monkeypatch.setenv("TCVE_CACHE_DIR", str(cache.root / "stage-cache"))
    return cache


def _load(path: Path):
    return torch.load(path, map_location="cpu", weights_only=True)


# ----------------------------------------------------------------------------- layouts


def test_files_have_the_published_layouts_and_names(cache: rehearsal.Rehearsal) -> None:
    generator_keys = _manifest_shapes("generator_rosinality_1024_keys.json")  # from rosinality's own model.py
    files = cache.files
    for name in ("stylegan2-ffhq-1024", "nada-sketch"):
        assert files[name].name == Path(checkpoints.get(name).filename).name
    base = _load(files["stylegan2-ffhq-1024"])
    assert set(base) == {"g_ema", "latent_avg"} and list(base["latent_avg"].shape) == [512]
    assert _shapes(base["g_ema"]) == generator_keys
    nada = _load(files["nada-sketch"])
    assert set(nada) == {"g_ema"} and _shapes(nada["g_ema"]) == generator_keys
    # The NADA Hub files are 132,724,587 bytes: a g_ema-only torch.save of config-f is within a few hundred bytes.
    assert abs(files["nada-sketch"].stat().st_size - checkpoints.get("nada-sketch").size) < 2048

    e4e = _load(files["e4e-ffhq"])
    assert set(e4e) == {"state_dict", "opts", "latent_avg"} and isinstance(e4e["opts"], dict)
    assert e4e["opts"]["encoder_type"] == "Encoder4Editing" and e4e["opts"]["start_from_latent_avg"] is True
    assert list(e4e["latent_avg"].shape) == [18, 512]
    assert _shapes(e4e["state_dict"], "encoder.") == _manifest_shapes("encoder_e4e_1024_keys.json")
    assert _shapes(e4e["state_dict"], "decoder.") == generator_keys
    # the published e4e_ffhq_encode.pt is 1,201,649,680 bytes (wmpscc/StyleGene's copy)
    assert abs(files["e4e-ffhq"].stat().st_size - 1_201_649_680) < 0.005 * 1_201_649_680

    mapper = _load(files["mapper-angry"])
    assert set(mapper) == {"state_dict", "opts"} and mapper["opts"]["no_fine_mapper"] is True
    groups = {k.split(".")[1] for k in mapper["state_dict"] if k.startswith("mapper.")}
    assert groups == {"course_mapping", "medium_mapping"}
    assert _shapes(mapper["state_dict"], "decoder.") == generator_keys

    boundary = np.load(files["interfacegan-smiling"], allow_pickle=False)
    assert boundary.shape == (1, 512) and boundary.dtype == np.float32
    assert files["interfacegan-smiling"].stat().st_size == 2176  # 2.18 kB on the Space
    dics = _load(files["directions-styleganex"])
    assert {"smile", "reduce_age", "glasses", "pose"} <= set(dics) and list(dics["smile"].shape) == [1, 18, 512]

    from torchvision.models import alexnet
    from torchvision.models.optical_flow import raft_large

    assert _shapes(_load(files["raft-large-things"])) == _shapes(raft_large().state_dict())
    assert _shapes(_load(files["lpips-alex-backbone"])) == _shapes(alexnet().state_dict())

    import open_clip
    from safetensors.torch import load_file

    clip = load_file(str(files["clip-vit-b-32"]))
    assert _shapes(clip) == _shapes(open_clip.create_model("ViT-B-32").state_dict())


def test_cache_is_laid_out_as_huggingface_hub_writes_it(cache: rehearsal.Rehearsal) -> None:
    path = cache.files["mapper-angry"]
    folder = cache.hub_cache / "models--AIRI-Institute--StyleFeatureEditor"
    commit = (folder / "refs" / "main").read_text()
    assert len(commit) == 40 and "\n" not in commit
    assert path == folder / "snapshots" / commit / "pretrained_models" / "styleclip_mappers" / "angry.pt"
    assert path.is_symlink() and not os.path.isabs(os.readlink(path))
    blob = path.resolve()
    assert blob.parent == folder / "blobs" and blob.name == cache.manifest["mapper-angry"]["sha256"]
    assert (cache.hub_cache / "spaces--ybelkada--interfacegan_pp" / "refs" / "main").is_file()
    torch_hub = cache.torch_home / "hub" / "checkpoints"
    assert cache.files["raft-large-things"] == torch_hub / "raft_large_C_T_V1-22a6c225.pth"
    # a second build with the same names reuses the files
    again = rehearsal.build(cache.root, rehearsal.CI_NAMES)
    assert again.seconds == 0 and again.files == cache.files


def test_fetch_goes_through_hf_hub_download_offline(offline_env: rehearsal.Rehearsal,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    calls = []
    real = huggingface_hub.hf_hub_download

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", spy)
    for name, path in offline_env.files.items():
        assert checkpoints.is_cached(name)
        assert checkpoints.fetch(name) == path, name
    hub_names = [n for n in offline_env.files if checkpoints.get(n).repo_id]
    assert len(calls) == len(hub_names)
    assert all(kw["local_files_only"] is True and kw["cache_dir"] == str(offline_env.hub_cache) for _, kw in calls)


# ----------------------------------------------------------------------------- hash / size checks


def test_manifest_replaces_the_registry_values_and_verify_still_checks(offline_env: rehearsal.Rehearsal,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    name = "nada-sketch"  # the registry knows its published size, which the random file does not have
    path = offline_env.files[name]
    assert checkpoints.fetch(name) == path  # the manifest's size / sha256 are used
    monkeypatch.delenv(checkpoints.ENV_CHECKPOINT_MANIFEST)
    checkpoints._VERIFIED.clear()
    with pytest.raises(CheckpointFormatError, match="132724587") as info:
        checkpoints.fetch(name)
    assert "rinong/stylegan-nada-models/sketch.pt" in str(info.value)
    # a manifest whose values match neither the file nor the registry: refused on the sha256
    other = dict(offline_env.manifest)
    other[name] = {"sha256": "0" * 64, "size": offline_env.manifest[name]["size"]}
    bad = tmp_path / "manifest.json"
    bad.write_text(json.dumps(other))
    monkeypatch.setenv(checkpoints.ENV_CHECKPOINT_MANIFEST, str(bad))
    with pytest.raises(CheckpointFormatError, match="sha256"):
        checkpoints.fetch(name)
    bad.write_text("{not json")
    with pytest.raises(CheckpointFormatError, match="manifest"):
        checkpoints.fetch(name)


# ----------------------------------------------------------------------------- bad files in the cache


@pytest.fixture()
def small_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> rehearsal.Rehearsal:
    small = rehearsal.build(tmp_path / "small", ["directions-styleganex", "interfacegan-smiling", "raft-large-things"])
    for key, value in small.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv(checkpoints.ENV_CHECKPOINT_DIR, raising=False)
    checkpoints._VERIFIED.clear()
    return small


def _replace_blob(path: Path, data: bytes | None) -> None:
    blob = path.resolve()
    blob.unlink()
    if data is not None:
        blob.write_bytes(data)


def test_missing_file_names_the_checkpoint_and_repository(small_cache: rehearsal.Rehearsal) -> None:
    from tcve.edit import load_direction

    _replace_blob(small_cache.files["interfacegan-smiling"], None)  # snapshot link left dangling
    assert not checkpoints.is_cached("interfacegan-smiling")
    with pytest.raises(CheckpointUnavailable) as info:
        load_direction("interfacegan-smiling")
    message = str(info.value)
    assert "ybelkada/interfacegan_pp/boundaries/stylegan2_ffhq/boundary_Smiling.npy" in message
    assert "offline" in message


def test_truncated_file_is_refused_by_size(small_cache: rehearsal.Rehearsal) -> None:
    path = small_cache.files["directions-styleganex"]
    _replace_blob(path, path.read_bytes()[:1000])
    with pytest.raises(CheckpointFormatError) as info:
        checkpoints.fetch("directions-styleganex")
    assert "PKUWilliamYang/StyleGANEX/direction_dics.pt" in str(info.value) and "truncated" in str(info.value)


@pytest.mark.parametrize("damage", ["truncated", "wrong-layout"])
def test_unreadable_file_without_known_size_names_the_checkpoint(small_cache: rehearsal.Rehearsal,
                                                                 monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                 damage: str) -> None:
    """No size / sha256 known (a registry entry without them, no manifest): the loader's failure is reported
    as one CheckpointFormatError naming the checkpoint, its repository and the file."""
    from tcve.edit import load_direction
    from tcve.flow import load_flow_estimator

    monkeypatch.delenv(checkpoints.ENV_CHECKPOINT_MANIFEST)
    npy, pt = small_cache.files["interfacegan-smiling"], small_cache.files["raft-large-things"]
    if damage == "truncated":
        _replace_blob(npy, npy.read_bytes()[:200])
        pt.write_bytes(pt.read_bytes()[: 1 << 20])
    else:
        buffer = tmp_path / "x.npy"
        np.save(buffer, np.zeros((3, 7), np.float32))  # a valid .npy of the wrong shape
        _replace_blob(npy, buffer.read_bytes())
        torch.save({"not": torch.zeros(3)}, pt)  # a valid torch file without RAFT's weights
    with pytest.raises(CheckpointFormatError) as info:
        direction = load_direction("interfacegan-smiling")
        from tcve.edit import _direction_plus

        _direction_plus(direction, 18, torch.zeros(1, 18, 512))  # the wrong shape is caught where it is used
    if damage == "truncated":
        assert "interfacegan-smiling" in str(info.value) and "ybelkada/interfacegan_pp" in str(info.value)
    with pytest.raises(CheckpointFormatError) as info:
        load_flow_estimator("raft-large", checkpoint="raft-large-things")
    message = str(info.value)
    assert "raft-large-things" in message and "raft_large_C_T_V1-22a6c225.pth" in message
    assert "download.pytorch.org" in message


def test_wrong_layout_in_the_cache_names_the_repository(offline_env: rehearsal.Rehearsal,
                                                        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A generator file where a mapper belongs: one CheckpointFormatError naming the mapper's repository."""
    from tcve.edit import EditLoaders

    fake = tmp_path / "hub"
    generator = offline_env.files["stylegan2-ffhq-1024"]
    copy = tmp_path / "angry.pt"
    copy.symlink_to(generator.resolve())  # the 127 MB blob, not copied
    hub_cache.add_to_hub_cache(fake, "AIRI-Institute/StyleFeatureEditor",
                               "pretrained_models/styleclip_mappers/angry.pt", copy,
                               sha256=offline_env.manifest["stylegan2-ffhq-1024"]["sha256"])
    monkeypatch.setenv("HF_HUB_CACHE", str(fake))
    monkeypatch.delenv(checkpoints.ENV_CHECKPOINT_MANIFEST)
    with pytest.raises(CheckpointFormatError) as info:
        EditLoaders().mapper("mapper-angry")
    message = str(info.value)
    assert "mapper-angry" in message and "AIRI-Institute/StyleFeatureEditor" in message and "angry.pt" in message


# ----------------------------------------------------------------------------- the ffhq path, end to end


def test_torch_lpips_matches_the_lpips_package(offline_env: rehearsal.Rehearsal, tmp_path: Path) -> None:
    from tcve.losses import SpatialLPIPS
    from tcve.lpips_torch import TorchLPIPS
    from tcve.rehearsal.layouts import write_lpips_heads

    x, y = torch.rand(2, 3, 96, 80) * 2 - 1, torch.rand(2, 3, 96, 80) * 2 - 1
    for spatial in (True, False):
        ours = TorchLPIPS(spatial=spatial)  # backbone from the cache, heads from the lpips wheel
        theirs = SpatialLPIPS("alex", spatial=spatial)
        a, b = ours(x, y), theirs(x, y)
        assert a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    heads = write_lpips_heads(tmp_path / "heads.pth", seed=1)
    assert not torch.allclose(TorchLPIPS(heads=heads, spatial=False)(x, y), a)  # the heads are really used


@pytest.mark.slow
def test_reduced_rehearsal_runs_every_edit_kind_at_1024(offline_env: rehearsal.Rehearsal, tmp_path: Path) -> None:
    from bench.rehearsal import EDIT_KINDS, run_service
    from tcve.service import Service
    from tcve.video import probe

    service = Service("ffhq", device="cpu", workdir=tmp_path / "outputs")
    # every stage runs for the mapper edit; the other kinds stop after their direct edit (loading, CLIP optimisation
    # / NADA fine-tune, rendering at 1024): one consistency step at 1024 costs minutes and ~9 GB on a 2-core CPU
    rows, results = run_service(service, ROOT / "examples" / "astronaut.mp4", frames=FRAMES, steps=1,
                                preset="Preview", consistency_kinds=("mapper",))
    assert service.models().generator.size == 1024 and service.models().label == "FFHQ checkpoints"
    assert set(results) == {k for k, _, _ in EDIT_KINDS}
    for kind, result in results.items():
        assert probe(result.output).n_frames == FRAMES, kind
        assert np.isfinite(result.metrics["warping_error_direct"]), kind
        assert {"invert", "edit", "consistency"} <= set(result.seconds), kind
    notes = {kind: r.edit_note for kind, r in results.items()}
    assert "StyleCLIP mapper" in notes["mapper"] and "InterFaceGAN" in notes["direction"]
    assert "NADA" in notes["nada"] and "free text" in notes["text"] and "free text" in notes["text style"]
    assert all(r.seconds >= 0 and r.rss_gib > 0 for r in rows)


@pytest.mark.slow
def test_from_crops_rehearsal_needs_only_torch_packages(cache: rehearsal.Rehearsal, tmp_path: Path) -> None:
    """The GPU script's path on a CPU, in a fresh interpreter where gradio, mediapipe, av, lpips, open_clip and
    OpenCV cannot be imported; its measured stage times become a cost file for $TCVE_GPU_COSTS."""
    from tcve.gpu_costs import GpuCosts

    costs_file = tmp_path / "costs.json"
    blocked = ["gradio", "gradio_client", "mediapipe", "av", "lpips", "open_clip", "cv2", "face_alignment"]
    code = (f"import sys\nfor m in {blocked!r}: sys.modules[m] = None\n"
            "from bench.rehearsal_crops import main\n"
            f"main(['--root', {str(cache.root)!r}, '--frames', '2', '--steps', '1', '--edits', 'direction', "
            f"'--stages', 'invert,edit', '--device', 'cpu', '--costs-out', {str(costs_file)!r}])\n"
            f"assert not any(sys.modules.get(m) for m in {blocked!r})\n")
    env = {k: v for k, v in os.environ.items() if k != checkpoints.ENV_CHECKPOINT_DIR}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    # invert (e4e + one PTI pass at 1024) and the edit ran; consistency and stitching run in the Service test
    table = [line for line in done.stdout.splitlines() if line.startswith("| smile |")]
    assert [line.split("|")[2].strip() for line in table] == ["invert", "edit"]
    invert_seconds = float(table[0].split("|")[3])
    costs = GpuCosts.load(costs_file)
    assert costs.source.startswith("measured: bench/rehearsal_crops.py on CPU")
    # one PTI pass over 2 frames at 1024; the stages that did not run keep the model's figures
    assert costs.pti_frame_pass == pytest.approx(invert_seconds / 2, abs=0.06)
    assert (costs.consistency_pair, costs.stitch_step) == (GpuCosts().consistency_pair, GpuCosts().stitch_step)


def test_gradio_leg_of_the_bench_runs_an_edit_through_the_api(tmp_path: Path) -> None:
    """``bench.rehearsal.run_gradio`` (launch, gradio_client call, close), here on the tiny models."""
    pytest.importorskip("gradio")
    from bench.rehearsal import run_gradio
    from tcve.service import Service

    row = run_gradio(Service("tiny", device="cpu", workdir=tmp_path), ROOT / "examples" / "astronaut.mp4",
                     frames=2, steps=1)
    assert row.stage == "Gradio API /edit" and row.seconds > 0 and row.note

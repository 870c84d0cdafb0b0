"""The checkpoint registry: every downloadable file tcve uses, declared once, and ``fetch`` to get it.

Where each file lives was established from public code that downloads it (see ``source`` of each entry);
entries without a Hub copy (``repo_id=None`` and no ``url``) can only be provided locally.

``fetch(name)`` looks, in order, at an explicit path, ``$TCVE_CHECKPOINT_DIR`` (the registry filename's base
name, or its full relative path, inside that folder), the Hugging Face cache / Hub through ``hf_hub_download``
(offline, ``HF_HUB_OFFLINE=1``, it serves the cache: ``refs/<revision>`` -> ``snapshots/<commit>/<file>``), and
for torchvision-hosted weights torch.hub's cache (``$TORCH_HOME/hub/checkpoints``) / URL. The cache folders are read
from the environment at call time (``HF_HUB_CACHE``, else ``$HF_HOME/hub``), not when ``huggingface_hub`` was
imported. Every failure becomes one ``CheckpointUnavailable`` naming the checkpoint, its repository and how to
provide the file; a known sha256 / size is verified once per file.

``$TCVE_CHECKPOINT_MANIFEST`` names a JSON file ``{registry name: {"sha256": ..., "size": ...}}`` whose values
replace the registry's for the names it lists: for private mirrors holding re-saved files, and for rehearsals with
random weights (``tcve.rehearsal`` writes one). Files are still verified, against the manifest's values.
``load(name, loader)`` fetches and loads in one step, so that a file the loader cannot read is reported with the
checkpoint's name and repository.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from .errors import CheckpointFormatError, CheckpointUnavailable

log = logging.getLogger(__name__)

ENV_CHECKPOINT_DIR = "TCVE_CHECKPOINT_DIR"
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,})\.[A-Za-z]+$")
ENV_CHECKPOINT_MANIFEST = "TCVE_CHECKPOINT_MANIFEST"
T = TypeVar("T")


@dataclass(frozen=True)
class Checkpoint:
    name: str  # registry name, lower-case with hyphens: the one vocabulary of the CLI, the app and the tests
    kind: str  # generator | encoder | mapper | nada | direction | flow | lpips | clip | parsing | landmarks | identity
    format: str  # selects the loader: rosinality | nvlabs-pkl | psp | styleclip-mapper | w-directions | npy | ...
    filename: str  # path inside the repo (or the URL's file name)
    repo_id: str | None = None
    repo_type: str = "model"  # "model" or "space"
    revision: str | None = None  # None: the repo's default branch
    url: str | None = None  # plain-URL weights (torchvision-hosted)
    sha256: str | None = None
    size: int | None = None  # bytes
    license: str = ""
    source: str = ""  # where the location was confirmed / the upstream project
    description: str = ""

    @property
    def sha256_prefix(self) -> str | None:
        """The hash prefix a torchvision-hosted file carries in its name (``name-<hex>.pth``), as torch.hub checks."""
        match = _HASH_IN_NAME.search(Path(self.filename).name) if self.url else None
        return match.group(1) if match else None

    @property
    def location(self) -> str:
        if self.repo_id:
            prefix = "spaces/" if self.repo_type == "space" else ""
            return f"{prefix}{self.repo_id}/{self.filename}"
        return self.url or "(no public download: provide the file locally)"


_FFHQ_LICENSE = "NVIDIA Source Code License-NC (FFHQ StyleGAN2 weights)"
_STYLECLIP_MAPPERS_REPO = "AIRI-Institute/StyleFeatureEditor"
# The 14 mappers released by StyleCLIP (names as in PTI's scripts/pti_styleclip.py); all hosted in that repo.
STYLECLIP_MAPPER_NAMES = (
    "afro", "angry", "beyonce", "bobcut", "bowlcut", "curly_hair", "depp", "hilary_clinton",
    "mohawk", "purple_hair", "surprised", "taylor_swift", "trump", "zuckerberg",
)
# StyleGAN-NADA generators hosted by its author (rosinality layout, 132,724,587 bytes each); the paper's five
# out-of-domain styles are sketch, pixar, disney_princess, elf and zombie.
NADA_STYLE_NAMES = (
    "sketch", "pixar", "disney_princess", "elf", "zombie", "joker", "botero", "white_walker", "simpson", "ssj",
    "cubism", "edvard_munch", "van_gogh", "oil", "rick_morty", "anime", "shrek", "thanos", "ukiyoe", "witcher",
    "modigliani", "crochet", "modernism", "marble", "ghibli",
)
# Published sha256 of the NADA files (from the LFS pointer shown on the Hub page of the commit that last uploaded
# each file; a file whose latest upload could not be confirmed has no entry here): name -> (sha256, commit).
NADA_SHA256 = {
    "pixar": ("e690afbf1518362220e663f3db74b40f40667f13daab7689d86e90035d8d537f", "d1d03db"),
    "elf": ("2965fd5d0dda16a70f8a53a44f108a7bf601b01790f797cd72fc0ea3e3274c43", "5d5cb83"),
    "zombie": ("754ccf9a7e8507e41da960166e56c9021f07f8337a8a8ae1e2775c83ce08d9f3", "d7facca"),
    "joker": ("9a00c9664d1862a22e448b0aae4fc975978c4b2a13e0f800c777f1b9bbbec827", "dc74990"),
    "shrek": ("b92a8e5912d1e369f0611eccd0ed06034d4e52486b6926ab5c6810259ab90951", "d1c3b6d"),
    "ghibli": ("94c25e6a83a14fb90e6f39741f93eb7217dbbe357abc37619955c102a899a075", "154b765"),
}
# InterFaceGAN++ boundaries for StyleGAN2-FFHQ, hosted in a Space (1x512 W directions, .npy).
INTERFACEGAN_PP_NAMES = ("Bald", "Eyeglasses", "Hat", "Mustache", "Smiling", "Young")


def _hyphen(name: str) -> str:
    return name.lower().replace("_", "-")


_ENTRIES: list[Checkpoint] = [
    Checkpoint(
        "stylegan2-ffhq-1024", "generator", "rosinality", "stylegan2-ffhq-config-f.pt",
        repo_id="akhaliq/jojogan-stylegan2-ffhq-config-f", license=_FFHQ_LICENSE,
        source="hf_hub_download in JoJoGAN and in the StyleGAN-NADA Space (model_repos['base'])",
        description="FFHQ 1024 StyleGAN2 config-f, rosinality layout (g_ema + latent_avg)",
    ),
    Checkpoint(
        "stylegan2-ffhq-1024-nvlabs", "generator", "nvlabs-pkl", "stylegan2-ffhq1024x1024.pkl",
        repo_id="DragGan/DragGan-Models", size=381_624_121, license=_FFHQ_LICENSE,
        sha256="a205a346e86a9ddaae702e118097d014b7b8bd719491396a162cca438f2f524c",
        source="snapshot_download in the DragGan-Inversion Space; same file as stylegan2-ada-pytorch's ffhq.pkl "
               "(sha256: the Hub's LFS details of this file; the same value pins nvlabs-fi-cdn's ffhq.pkl in "
               "public download scripts)",
        description="FFHQ 1024 StyleGAN2-ADA network pickle (G_ema), read with a restricted unpickler",
    ),
    Checkpoint(
        "e4e-ffhq", "encoder", "psp", "e4e_ffhq_encode.pt", repo_id="public-data/e4e",
        license="MIT (encoder4editing)", source="hysts' HairCLIP Space (_load_e4e)",
        description="e4e FFHQ encoder (Encoder4Editing, IR-SE50) with its decoder",
    ),
    Checkpoint(
        "psp-ffhq", "encoder", "psp", "psp_ffhq_encode.pt", repo_id="trysem/pixel2style2pixel",
        sha256="f786ac5cf18fcdbc5c57c9f3f12cbedca69381fbdf5694dd132294e3133749d7",
        license="MIT (pixel2style2pixel)",
        source="HF tree of trysem/pixel2style2pixel (sha256: the Hub's LFS details of the file, uploaded in f5add9e)",
        description="pSp FFHQ encoder (GradualStyleEncoder)",
    ),
    Checkpoint(
        "restyle-e4e-ffhq", "encoder", "psp", "restyle_e4e_ffhq_encode.pt",
        license="MIT (restyle-encoder)", source="github.com/yuval-alaluf/restyle-encoder (Google Drive only)",
        description="ReStyle-e4e FFHQ encoder; no Hub copy is known: provide it locally",
    ),
    Checkpoint(
        "restyle-psp-ffhq", "encoder", "psp", "restyle_psp_ffhq_encode.pt",
        license="MIT (restyle-encoder)", source="github.com/yuval-alaluf/restyle-encoder (Google Drive only)",
        description="ReStyle-pSp FFHQ encoder (the paper's out-of-domain inversion); provide it locally",
    ),
    *[
        Checkpoint(
            f"mapper-{_hyphen(n)}", "mapper", "styleclip-mapper", f"pretrained_models/styleclip_mappers/{n}.pt",
            repo_id=_STYLECLIP_MAPPERS_REPO, license="MIT (StyleCLIP)",
            source="HF tree of AIRI-Institute/StyleFeatureEditor (StyleCLIP's released mappers)",
            description=f"StyleCLIP latent mapper '{n}'",
        )
        for n in STYLECLIP_MAPPER_NAMES
    ],
    Checkpoint(
        "mapper-eyeglasses", "mapper", "styleclip-mapper", "eyeglasses.pt", license="MIT (VideoEditGAN)",
        source="VideoEditGAN README (Google Drive only)",
        description="The paper's eyeglasses mapper; no Hub copy: provide it locally (else the eyeglasses direction is used)",
    ),
    Checkpoint(
        "mapper-beard", "mapper", "styleclip-mapper", "beard.pt", license="MIT (StyleCLIP)",
        source="not released publicly", description="The paper's beard mapper; provide it locally",
    ),
    Checkpoint(
        "directions-styleganex", "direction", "w-directions", "direction_dics.pt", repo_id="PKUWilliamYang/StyleGANEX",
        license="S-Lab License 1.0 (StyleGANEX)", source="hf_hub_download in StyleGANEX's webUI/styleganex_model.py",
        description="W+ directions for FFHQ StyleGAN2: smile, open_eye, open_mouth, pose, reduce_age, glasses, ...",
    ),
    *[
        Checkpoint(
            f"interfacegan-{n.lower()}", "direction", "npy",
            f"boundaries/stylegan2_ffhq/boundary_{n}.npy", repo_id="ybelkada/interfacegan_pp", repo_type="space",
            license="MIT (InterFaceGAN)", source="HF tree of the ybelkada/interfacegan_pp Space",
            description=f"InterFaceGAN++ W boundary '{n}' for FFHQ StyleGAN2",
        )
        for n in INTERFACEGAN_PP_NAMES
    ],
    *[
        Checkpoint(
            f"nada-{_hyphen(n)}", "nada", "rosinality", f"{n}.pt", repo_id="rinong/stylegan-nada-models",
            size=132_724_587, license="MIT (StyleGAN-NADA)", sha256=NADA_SHA256.get(n, (None, ""))[0],
            source="hf_hub_download in StyleGANEX's webUI and the StyleGAN-NADA Space"
                   + (f"; sha256: LFS pointer of Hub commit {NADA_SHA256[n][1]}" if n in NADA_SHA256 else ""),
            description=f"StyleGAN-NADA generator '{n}' (FFHQ 1024, rosinality layout)",
        )
        for n in NADA_STYLE_NAMES
    ],
    Checkpoint(
        "styleclip-fs3", "direction", "npy", "fs3.npy", repo_id="rinong/stylegan-nada-models",
        license="MIT (StyleCLIP)", source="uploaded with the NADA models for StyleCLIP global directions",
        description="StyleCLIP global-direction channel relevance (fs3) for FFHQ StyleGAN2",
    ),
    Checkpoint(
        "raft-large", "flow", "torchvision", "raft_large_C_T_SKHT_V2-ff5fadd5.pth",
        url="https://download.pytorch.org/models/raft_large_C_T_SKHT_V2-ff5fadd5.pth", license="BSD-3-Clause",
        source="torchvision.models.optical_flow.Raft_Large_Weights.DEFAULT",
        description="torchvision RAFT large (the paper's flow network family)",
    ),
    Checkpoint(
        "raft-large-things", "flow", "torchvision", "raft_large_C_T_V1-22a6c225.pth",
        url="https://download.pytorch.org/models/raft_large_C_T_V1-22a6c225.pth", license="BSD-3-Clause",
        source="torchvision Raft_Large_Weights.C_T_V1: the original raft-things weights, which the official code uses",
        description="RAFT large, FlyingChairs + FlyingThings (the paper's flow network)",
    ),
    Checkpoint(
        "raft-small", "flow", "torchvision", "raft_small_C_T_V2-01064c6d.pth", repo_id="hr16/RAFT-v2",
        url="https://download.pytorch.org/models/raft_small_C_T_V2-01064c6d.pth", license="BSD-3-Clause",
        source="torchvision Raft_Small_Weights.DEFAULT; Hub mirror hr16/RAFT-v2",
        description="torchvision RAFT small",
    ),
    Checkpoint(
        "lpips-alex-backbone", "lpips", "torchvision", "alexnet-owt-7be5be79.pth",
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth", license="BSD-3-Clause",
        source="torchvision AlexNet weights, used by lpips.LPIPS(net='alex')",
        description="AlexNet ImageNet backbone of LPIPS-alex",
    ),
    Checkpoint(
        "lpips-vgg-backbone", "lpips", "torchvision", "vgg16-397923af.pth",
        url="https://download.pytorch.org/models/vgg16-397923af.pth", license="BSD-3-Clause",
        sha256="397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0", size=553_433_881,
        source="torchvision VGG16 weights, used by lpips.LPIPS(net='vgg') (sha256 and size as pinned in public "
               "download scripts; they match the hash prefix of the file name)",
        description="VGG16 ImageNet backbone of LPIPS-vgg",
    ),
    Checkpoint(
        "clip-vit-b-32", "clip", "open-clip", "open_clip_model.safetensors",
        repo_id="timm/vit_base_patch32_clip_224.openai", license="MIT (OpenAI CLIP)",
        source="open_clip pretrained config ViT-B-32 'openai' (hf_hub)",
        description="OpenAI CLIP ViT-B/32 through open-clip-torch",
    ),
    Checkpoint(
        "arcface-ir-se50", "identity", "irse-arcface", "model_ir_se50.pth", repo_id="matbee/model_ir_se50_pytorch",
        license="MIT (TreB1eN/InsightFace_Pytorch weights, as redistributed by pSp/e4e)",
        source="HF tree of matbee/model_ir_se50_pytorch (175 MB, state-dict pickle); pSp/e4e/STIT's ID-loss model",
        description="ArcFace IR-SE50 face embedding (TL-ID / TG-ID / ID-sim on FFHQ crops); sha256 not published",
    ),
    Checkpoint(
        "bisenet-faceparsing", "parsing", "state-dict", "models/faceparsing.pth", repo_id="PKUWilliamYang/VToonify",
        license="MIT (face-parsing.PyTorch)", source="hf_hub_download in VToonify and StyleGANEX",
        description="BiSeNet face parsing (19 CelebAMask-HQ classes), STIT's stitching masks",
    ),
]

REGISTRY: dict[str, Checkpoint] = {c.name: c for c in _ENTRIES}
if len(REGISTRY) != len(_ENTRIES):  # pragma: no cover - guards the table above
    raise RuntimeError("duplicate checkpoint names in the registry")


def get(name: str) -> Checkpoint:
    try:
        return REGISTRY[name]
    except KeyError:
        raise CheckpointUnavailable(name, None, None, "no such checkpoint in the registry") from None


def names(kind: str | None = None) -> list[str]:
    return [c.name for c in _ENTRIES if kind is None or c.kind == kind]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


def _local_candidates(ckpt: Checkpoint) -> list[Path]:
    root = os.environ.get(ENV_CHECKPOINT_DIR)
    if not root:
        return []
    base = Path(root)
    return [base / ckpt.filename, base / Path(ckpt.filename).name, base / f"{ckpt.name}{Path(ckpt.filename).suffix}"]


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file, read in 1 MiB blocks (checkpoints, the rehearsal's blobs, the result cache's key)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_VERIFIED: set[tuple] = set()


def _manifest() -> dict[str, dict[str, Any]]:
    """The ``$TCVE_CHECKPOINT_MANIFEST`` overrides (empty when unset); a bad manifest is a clear error."""
    path = os.environ.get(ENV_CHECKPOINT_MANIFEST)
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointFormatError(f"Cannot read the checkpoint manifest {path} (${ENV_CHECKPOINT_MANIFEST}): "
                                    f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise CheckpointFormatError(f"The checkpoint manifest {path} must map registry names to "
                                    '{"sha256": ..., "size": ...} objects.')
    return data


def expected(ckpt: Checkpoint) -> Checkpoint:
    """``ckpt`` with the sha256 / size a file must have: the manifest's values where it lists the name."""
    override = _manifest().get(ckpt.name)
    if override is None:
        return ckpt
    return replace(ckpt, sha256=override.get("sha256"), size=override.get("size"))


def verify(ckpt: Checkpoint, path: Path) -> Path:
    """Check size and sha256 (or the file name's hash prefix) where the registry (or ``$TCVE_CHECKPOINT_MANIFEST``)
    knows them; ``fetch`` calls it on every path it returns. A file that passed is not hashed again while its size
    and mtime stay the same."""
    published, ckpt = ckpt, expected(ckpt)
    prefix = ckpt.sha256_prefix if ckpt is published else None  # a manifest's values replace the name's prefix too
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime, ckpt.size, ckpt.sha256, prefix)
    if key in _VERIFIED:
        return path
    where = ckpt.location
    if ckpt.size is not None and stat.st_size != ckpt.size:
        raise CheckpointFormatError(
            f"Checkpoint '{ckpt.name}' ({where}, file {path.name}) has {stat.st_size} bytes, expected {ckpt.size}: "
            "the file is truncated or a different file. Delete it and fetch it again."
        )
    want = ckpt.sha256 or prefix
    if want is not None:
        actual = file_sha256(path)
        if not actual.startswith(want):
            raise CheckpointFormatError(
                f"Checkpoint '{ckpt.name}' ({where}, file {path.name}) has sha256 {actual}, expected "
                f"{want if ckpt.sha256 else want + '...'}: a different or damaged file. Delete it and fetch "
                "it again."
            )
    _VERIFIED.add(key)
    return path


def is_cached(name: str) -> bool:
    """Whether ``fetch(name)`` would succeed without network."""
    ckpt = get(name)
    return _find_local(ckpt) is not None


def hub_cache_dir() -> Path:
    """The Hugging Face cache folder as ``huggingface_hub`` would pick it now: ``HF_HUB_CACHE``, else
    ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub`` (read at call time, so a changed environment counts)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def _find_local(ckpt: Checkpoint) -> Path | None:
    for candidate in _local_candidates(ckpt):
        if candidate.is_file():
            return candidate
    if ckpt.repo_id:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(ckpt.repo_id, ckpt.filename, cache_dir=str(hub_cache_dir()),
                                            revision=ckpt.revision, repo_type=ckpt.repo_type)
            if isinstance(cached, str):
                return Path(cached)
        except Exception:  # a malformed cache is the same as no cache here
            log.debug("HF cache lookup failed for %s", ckpt.name, exc_info=True)
    if ckpt.url:
        hub_file = Path(_torch_hub_dir()) / "checkpoints" / ckpt.filename
        if hub_file.is_file():
            return hub_file
    return None


def _torch_hub_dir() -> str:
    import torch

    return torch.hub.get_dir()


def _hub_download(ckpt: Checkpoint, offline: bool) -> Path:
    """``hf_hub_download`` into the call-time cache; offline it only resolves ``refs`` -> snapshot in the cache."""
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(ckpt.repo_id, ckpt.filename, revision=ckpt.revision, repo_type=ckpt.repo_type,
                                cache_dir=str(hub_cache_dir()), local_files_only=offline))


def fetch(name: str, local_path: str | os.PathLike[str] | None = None) -> Path:
    """The local path of checkpoint ``name``, downloading it if needed and allowed.

    Raises ``CheckpointUnavailable`` (with how to provide the file) when it can be neither found nor downloaded,
    ``CheckpointFormatError`` when the file found fails its size / sha256 check.
    """
    ckpt = get(name)
    if local_path is not None:
        path = Path(local_path)
        if not path.is_file():
            raise CheckpointUnavailable(name, ckpt.repo_id, ckpt.filename, f"no file at {path}")
        return verify(ckpt, path)
    for candidate in _local_candidates(ckpt):
        if candidate.is_file():
            return verify(ckpt, candidate)
    offline = _offline()
    errors: list[str] = []
    if ckpt.repo_id:
        try:
            if not offline:
                log.info("fetching %s from the Hugging Face Hub (%s)", ckpt.name, ckpt.location)
            return verify(ckpt, _hub_download(ckpt, offline))
        except CheckpointFormatError:
            raise
        except Exception as exc:  # network, auth, missing file, broken cache entry: all the same to the user
            errors.append(f"Hub: {type(exc).__name__}" + (" (not in the cache)" if offline else ""))
    if ckpt.url:
        target = Path(_torch_hub_dir()) / "checkpoints" / ckpt.filename
        if target.is_file():
            return verify(ckpt, target)
        if not offline:
            try:
                import torch

                target.parent.mkdir(parents=True, exist_ok=True)
                log.info("downloading %s from %s", ckpt.name, ckpt.url)
                torch.hub.download_url_to_file(ckpt.url, str(target), progress=False)
                return verify(ckpt, target)
            except CheckpointFormatError:
                raise
            except Exception as exc:
                errors.append(f"URL: {type(exc).__name__}")
        else:
            errors.append(f"not in torch.hub's cache ({target.parent})")
    if offline:
        errors.insert(0, "offline (HF_HUB_OFFLINE is set) and not cached")
    reason = "; ".join(errors) if errors else "it has no public download location"
    raise CheckpointUnavailable(name, ckpt.repo_id, ckpt.filename, reason)


def load(name: str, loader: Callable[[Path], T], local_path: str | os.PathLike[str] | None = None) -> T:
    """``loader(fetch(name))``, with any failure to read the file reported as one ``CheckpointFormatError`` that
    names the checkpoint, its repository and the file (loaders deep inside libraries raise all kinds of errors)."""
    path = fetch(name, local_path)
    try:
        return loader(path)
    except CheckpointUnavailable:
        raise
    except (MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:
        ckpt = get(name)
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointFormatError(
            f"Checkpoint '{name}' ({ckpt.location}) at {path} cannot be loaded: {type(exc).__name__}: {detail}. "
            "It is truncated, damaged or not in the published layout; delete it and fetch it again."
        ) from exc

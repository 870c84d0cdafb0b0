"""``python -m tcve``: list, edit (tiny models, 4 frames of the example clip) and metrics; exit codes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tcve import cli
from tcve.edit import EDITS
from tcve.service import example_clips
from tcve.video import probe, read_video

CLIP = example_clips()[0]
FRAMES = 4
LIGHT = ["--set", "pti_steps=1", "--set", "phase1_epochs=1", "--set", "phase2_epochs=1", "--set", "stitch_steps=1"]


def test_list_shows_edits_styles_and_checkpoints(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list", "--models", "ffhq"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "in-domain edits" in out and "out-of-domain styles" in out
    listed = {line.split()[0] for line in out.splitlines() if line.startswith("  ")}
    assert {name.split()[0] for name in EDITS} <= listed
    assert "stylegan2-ffhq-1024" in out and "checkpoint" in out
    # offline with nothing cached: the FFHQ set says why an edit cannot run
    assert "checkpoint not available" in out


def test_list_checkpoints_by_kind(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list", "--kind", "generator"]) == cli.EXIT_OK
    rows = capsys.readouterr().out.splitlines()[1:]
    assert rows and all(r.split()[1] == "generator" for r in rows)


@pytest.fixture(scope="module")
def edited(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    out = tmp_path_factory.mktemp("cli")
    rc = cli.main(["edit", str(CLIP), "-o", str(out / "edited.mp4"), "--edit", "angry", "--models", "tiny",
                   "--device", "cpu", "--max-frames", str(FRAMES), "--compare", str(out / "sbs.mp4"),
                   "--direct", str(out / "direct.mp4"), "--metrics", str(out / "metrics.json"), "-q", *LIGHT])
    return rc, out


def test_edit_writes_a_playable_mp4_with_audio(edited: tuple[int, Path]) -> None:
    rc, out = edited
    assert rc == cli.EXIT_OK
    source = probe(CLIP)
    frames, info = read_video(out / "edited.mp4", limits=None)  # decodes every frame back
    assert frames.shape == (FRAMES, source.height, source.width, 3) and frames.dtype == np.uint8
    assert float(info.fps) == pytest.approx(float(source.fps)) and info.has_audio
    assert frames.std() > 1.0  # real pictures, not a blank stream
    sbs, _ = read_video(out / "sbs.mp4", limits=None)
    assert sbs.shape[0] == FRAMES and sbs.shape[2] > sbs.shape[1]  # three panels side by side
    assert read_video(out / "direct.mp4", limits=None)[0].shape == frames.shape
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["frames"] == FRAMES and summary["edit"] == "angry"
    for key in ("warping_error_direct", "warping_error_consistent", "lpips_to_direct_consistent"):
        assert math.isfinite(summary["metrics"][key]) and summary["metrics"][key] >= 0
    assert all(len(v) == FRAMES - 1 for v in summary["curves"].values())


def test_metrics_command(edited: tuple[int, Path], capsys: pytest.CaptureFixture[str]) -> None:
    _, out = edited
    # a trimmed copy of the input with the same frames as the outputs is the flow reference
    reference = out / "reference.mp4"
    from tcve.video import ReadOptions, write_video

    frames, info = read_video(CLIP, ReadOptions(end=FRAMES / float(probe(CLIP).fps)))
    write_video(reference, frames, info.fps)
    rc = cli.main(["metrics", str(out / "edited.mp4"), "--reference", str(reference), "--direct",
                   str(out / "direct.mp4"), "--models", "tiny", "--device", "cpu", "--size", "64",
                   "--json", str(out / "m.json")])
    assert rc == cli.EXIT_OK
    values = json.loads(capsys.readouterr().out)
    assert values["frames"] == FRAMES and values == json.loads((out / "m.json").read_text())
    assert math.isfinite(values["warping_error"]) and values["warping_error"] >= 0
    assert 0 <= values["lpips_to_direct"] < 1
    # the reference measured against itself has no LPIPS distance
    cli.main(["metrics", str(reference), "--reference", str(reference), "--models", "tiny", "--size", "64"])
    assert json.loads(capsys.readouterr().out)["lpips_to_reference"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("argv, code", [
    (["edit", "missing.mp4", "-o", "x.mp4", "--edit", "no such edit", "--models", "tiny"], cli.EXIT_USAGE),
    (["edit", str(CLIP), "-o", "x.mp4", "--edit", "angry", "--domain", "out", "--models", "tiny"], cli.EXIT_USAGE),
    (["edit", str(CLIP), "-o", "x.mp4", "--edit", "angry", "--preset", "Fast", "--models", "tiny"], cli.EXIT_USAGE),
    (["edit", str(CLIP), "-o", "x.mp4", "--edit", "angry", "--set", "nope=1", "--models", "tiny"], cli.EXIT_USAGE),
    (["edit", "README.md", "-o", "x.mp4", "--edit", "angry", "--models", "tiny"], cli.EXIT_BAD_INPUT),
])
def test_exit_codes(argv: list[str], code: int, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == code
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in err


def test_argparse_usage_error_exits_2() -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["edit", str(CLIP)])  # no -o, no edit
    assert info.value.code == cli.EXIT_USAGE


def test_missing_checkpoint_exits_4(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # offline, nothing cached: the FFHQ set cannot fetch its generator
    rc = cli.main(["edit", str(CLIP), "-o", str(tmp_path / "x.mp4"), "--edit", "angry", "--models", "ffhq",
                   "--device", "cpu", "-q"])
    assert rc == cli.EXIT_CHECKPOINT
    assert "stylegan2-ffhq-1024" in capsys.readouterr().err

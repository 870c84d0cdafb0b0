"""``python -m tcve``: list, edit (tiny models, 4 frames of the example clip) and metrics; exit codes."""

from __future__ import annotations

import json
import math
import os
import sys
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
    (["edit", str(CLIP), "-o", "x.mp4", "--edit", "angry", "--preset", "Faster", "--models", "tiny"], cli.EXIT_USAGE),
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


# ----------------------------------------------------------------------------- usage errors before any work


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building the networks or reading frames counts as work: fail loudly if a command gets that far."""
    from tcve.service import Service

    def refuse(*args, **kwargs):
        raise AssertionError("work started")

    monkeypatch.setattr(Service, "models", refuse)
    monkeypatch.setattr(Service, "prepare", refuse)
    monkeypatch.setattr(Service, "run", refuse)


@pytest.mark.parametrize("extra, says", [
    (["--start", "2", "--end", "1"], "trim end"),
    (["--end", "0"], "trim end"),
    (["--start", "-1"], "trim start"),
    (["--max-frames", "-3"], "--max-frames"),
    (["--max-frames", "0"], "--max-frames"),
    (["--strength", "99"], "outside the range"),
    (["--compare", "sbs.gif"], "must end in .mp4"),
])
def test_usage_errors_exit_2_with_one_line_before_any_work(extra: list[str], says: str, no_work: None,
                                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["edit", str(CLIP), "-o", str(tmp_path / "x.mp4"), "--edit", "angry", "--models", "tiny", *extra]
    assert cli.main(argv) == cli.EXIT_USAGE
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], captured.err
    assert captured.out == ""


def test_output_that_is_a_directory_is_a_usage_error(no_work: None, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    for target in (str(tmp_path), str(tmp_path / "new") + "/", str(CLIP)):
        assert cli.main(["edit", str(CLIP), "-o", target, "--edit", "angry", "--models", "tiny"]) == cli.EXIT_USAGE
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: -o/--output")
    assert not (tmp_path / "new").exists()


def test_an_edit_the_model_set_lacks_fails_before_any_work(no_work: None, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    rc = cli.main(["edit", str(CLIP), "-o", str(tmp_path / "x.mp4"), "--edit", "beard", "--models", "demo"])
    assert rc == cli.EXIT_CHECKPOINT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'beard'" in err[0]
    assert all(name in err[0] for name in ("eyeglasses", "angry", "surprised", "smile", "age"))  # what it offers


@pytest.mark.parametrize("given, canonical", [("fast", "Fast"), ("FAST", "Fast"), ("paper", "Paper settings"),
                                              ("Paper settings", "Paper settings"), ("preview", "Preview")])
def test_one_preset_vocabulary_for_edit_and_evaluate(given: str, canonical: str, monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    from tcve.errors import Cancelled
    from tcve.service import Service

    seen = {}

    def fake_run(self, path, spec, preset, *args, **kwargs):
        seen["preset"] = preset
        raise Cancelled("stop here")

    monkeypatch.setattr(Service, "run", fake_run)
    rc = cli.main(["edit", str(CLIP), "-o", str(tmp_path / "x.mp4"), "--edit", "angry", "--models", "tiny",
                   "--preset", given, "-q"])
    assert rc == cli.EXIT_CANCELLED and seen["preset"] == canonical
    if canonical != "Preview":
        args = cli.build_parser().parse_args(["evaluate", "--clips", "examples", "--preset", given])
        assert args.preset == {"Fast": "fast", "Paper settings": "paper"}[canonical]
    else:
        with pytest.raises(SystemExit) as info:
            cli.build_parser().parse_args(["evaluate", "--clips", "examples", "--preset", given])
        assert info.value.code == cli.EXIT_USAGE


def test_pipeline_messages_go_to_stderr(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from types import SimpleNamespace

    from tcve.service import Service

    messages = ["Up to 2 faces are visible; only the main (largest, most central) one is edited.",
                "The face was not detected in 4 of 8 frames; those were filled in from their neighbours.",
                "Only the first 8 of 40 frames were edited (the preset's cap)."]
    made = tmp_path / "made.mp4"
    made.write_bytes(b"mp4")

    def fake_run(self, *args, **kwargs):
        return SimpleNamespace(output=made, direct=made, side_by_side=made, messages=messages, metrics={},
                               info=SimpleNamespace(n_frames=8, fps=25), summary=lambda: {})

    monkeypatch.setattr(Service, "run", fake_run)
    rc = cli.main(["edit", str(CLIP), "-o", str(tmp_path / "x.mp4"), "--edit", "angry", "--models", "tiny", "-q"])
    assert rc == cli.EXIT_OK
    captured = capsys.readouterr()
    for message in messages:
        assert f"note: {message}" in captured.err and message not in captured.out
    assert captured.out.startswith("wrote ")


def test_native_log_lines_stay_out_of_the_terminal(monkeypatch: pytest.MonkeyPatch,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    """MediaPipe (TF-Lite, absl) writes log lines to file descriptor 2 from C++; the CLI keeps them out of the
    progress bar while Python's own stderr output still shows."""
    from tcve.landmarks import load_detector
    from tcve.video import ReadOptions

    def command(args) -> int:
        frame = read_video(CLIP, ReadOptions(end=0.05), limits=None)[0][0]
        detector = load_detector("mediapipe")
        faces = detector(frame)
        detector.close()
        os.write(2, b"W0000 native line written straight to fd 2\n")
        print(f"progress: {len(faces)} face", file=sys.stderr)
        return cli.EXIT_OK

    monkeypatch.setattr(cli, "_cmd_list", command)
    assert cli.main(["list"]) == cli.EXIT_OK
    err = capfd.readouterr().err
    assert "progress: 1 face" in err
    for noise in ("W0000", "XNNPACK", "inference_feedback_manager", "absl::InitializeLog"):
        assert noise not in err
    os.write(2, b"after\n")  # descriptor 2 is restored once the command ends
    assert "after" in capfd.readouterr().err


def test_list_prints_plain_text_that_fits_the_demo_pack(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list", "edits", "--models", "demo"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "**" not in out and "`" not in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    for name in ("eyeglasses", "angry", "surprised", "smile", "age", "sketch"):
        assert " yes " in rows[name] and "demo-pack" in rows[name], rows[name]
        assert "Hub" not in rows[name] and "InterFaceGAN" not in rows[name] and "StyleCLIP" not in rows[name]

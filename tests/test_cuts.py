"""Every cut is said: preset caps, frame caps, limits, a damaged tail; poor reconstructions are said plainly; the CLI
writes only where it is told, offers --stride / --max-side, and cleans up on SIGTERM."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tcve import cli
from tcve.service import Service
from tcve.video import VideoLimits, probe, read_video, write_video

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.mp4"
# Stages off: reading, detection, encoder codes, the direct edit and writing are what these tests are about.
NO_TUNING = ["--set", "pti_steps=0", "--set", "phase1_epochs=0", "--set", "phase2_epochs=0", "--set",
             "stitch_steps=0", "--models", "tiny", "--device", "cpu", "-q"]


def _noise_clip(path: Path, n: int = 30) -> Path:
    rng = np.random.default_rng(0)
    return write_video(path, [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(n)], 10)


def test_a_damaged_tail_is_read_up_to_the_damage_and_reported(tmp_path):
    whole = _noise_clip(tmp_path / "whole.mp4")
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.8)])
    info = probe(cut, limits=None)
    assert info.damaged is not None and info.damaged == (info.n_frames, 30) and 10 < info.n_frames < 30
    assert probe(whole, limits=None).damaged is None
    assert len(read_video(cut, limits=None)[0]) == info.n_frames  # read up to the damage


def test_caps_are_said_with_what_to_change(tmp_path):
    clip = _noise_clip(tmp_path / "clip.mp4", 20)
    service = Service("tiny", device="cpu", workdir=tmp_path / "runs")
    options = service.read_options(clip)
    cap, why = service.frame_cap("Preview", None, VideoLimits())
    assert cap == 8 and "Preview" in why and "Paper settings" in why
    message = service.cut_message(clip, options, cap, why)
    assert message.startswith("Only the first 8 of the 20 frames are edited (0.00–0.80 s of 0.00–2.00 s)")
    cap, why = service.frame_cap("Paper settings", None, VideoLimits(max_frames=12))
    assert cap == 12 and "stride" in why and "12 of the 20" in service.cut_message(clip, options, cap, why)
    assert service.cut_message(clip, options, *service.frame_cap("Paper settings", None, VideoLimits())) == ""
    # stride and downscale reach the reader
    options = service.read_options(clip, stride=2, max_side=32)
    info = probe(clip, options, limits=None)
    assert info.n_frames == 10 and (info.width, info.height) == (32, 32)


@pytest.mark.slow
def test_cli_says_cuts_and_poor_reconstruction_and_writes_only_where_asked(tmp_path, monkeypatch, capsys):
    frames, source = read_video(EXAMPLE, limits=None)
    whole = write_video(tmp_path / "whole.mp4", frames[:12], source.fps)
    clip = tmp_path / "damaged.mp4"
    clip.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.8)])
    decoded = probe(clip, limits=None).n_frames
    assert decoded < 12
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # $TMPDIR: nothing may be left there
    out = tmp_path / "out"
    out.mkdir()
    rc = cli.main(["edit", str(clip), "-o", str(out / "edited.mp4"), "--edit", "angry", "--preset", "Paper settings",
                   "--stride", "1", "--max-side", "320", *NO_TUNING])
    err = capsys.readouterr().err
    assert rc == cli.EXIT_OK
    assert f"declares 12 frames but only {decoded}" in err  # the cut at the damage is said
    assert "poor reconstruction (PSNR" in err and "FFHQ" in err  # tiny random networks reconstruct nothing
    assert sorted(p.name for p in out.iterdir()) == ["edited.mp4"]  # no hidden work folder left
    assert not (scratch / "tcve-outputs").exists()  # no second copy under $TMPDIR/tcve-outputs/<key>/
    assert read_video(out / "edited.mp4", limits=None)[0].shape[0] == decoded


def test_sigterm_while_writing_leaves_no_hidden_files(tmp_path):
    # The run is faked (no networks): it starts writing the output, then the process gets SIGTERM.
    script = textwrap.dedent(f"""
        import os, signal, sys
        import numpy as np
        from pathlib import Path
        from tcve import cli, service
        from tcve.video import VideoWriter

        def run(self, path, spec, *args, output_dir=None, **kwargs):
            target = Path(output_dir or {str(tmp_path)!r}) / "edited.mp4"
            with VideoWriter(target, 10) as writer:
                for i in range(50):
                    writer.write(np.zeros((32, 32, 3), np.uint8))
                    if i == 3:
                        os.kill(os.getpid(), signal.SIGTERM)
            raise AssertionError("not reached")

        service.Service.run = run
        service.Service.config_for = lambda *a, **k: None
        sys.exit(cli.main(["edit", {str(EXAMPLE)!r}, "-o", {str(tmp_path / "edited.mp4")!r}, "--edit", "angry",
                           "--models", "tiny", "--device", "cpu", "-q"]))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == cli.EXIT_CANCELLED, done.stderr[-2000:]  # on main: killed by the signal (-15)
    assert list(tmp_path.iterdir()) == []  # no hidden .edited.*.mp4, no work folder

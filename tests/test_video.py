"""tcve.video: decoding (formats, VFR, rotation, trim/stride), H.264 writing with audio in sync, limits and errors."""

from __future__ import annotations

import inspect
import os
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from tcve.errors import CorruptVideo, EmptyVideo, NotAVideo, VideoTooLarge, VideoTooLong
from tcve.video import (AudioSource, ReadOptions, VideoLimits, VideoWriter, iter_frames, probe, read_video,
                        side_by_side, splice_frames, write_side_by_side, write_video)

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.mp4"
RATE = 16000


def _level_frames(n: int, size: tuple[int, int] = (48, 64)) -> np.ndarray:
    """Frames whose grey level encodes their index (index * 3 + 5), so decoded order and timing can be read back."""
    h, w = size
    return np.stack([np.full((h, w, 3), 3 * i + 5, np.uint8) for i in range(n)])


def _frame_index(frame: np.ndarray) -> int:
    return int(round((float(frame.mean()) - 5) / 3))


def _make_clip(path: Path, frames: np.ndarray, fps: int = 25, pts: list[int] | None = None, time_base=None,
               switch_at: float | None = None, seconds: float | None = None, fmt: str = "mp4",
               codec: str = "libx264", faststart: bool = True) -> Path:
    """Test clip with PyAV. Audio: a tone of 440 Hz, switching to 880 Hz at `switch_at` seconds (to check sync)."""
    opts = {"movflags": "+faststart"} if faststart and fmt == "mp4" else {}
    with av.open(str(path), "w", format=fmt, options=opts) as out:
        v = out.add_stream(codec, rate=fps)
        v.width, v.height = frames.shape[2], frames.shape[1]
        v.pix_fmt = "rgb8" if codec == "gif" else "yuv420p"
        if time_base is not None:
            v.time_base = time_base
        if codec == "libx264":
            v.options = {"crf": "10", "preset": "ultrafast"}
        elif codec in ("mpeg4", "libvpx-vp9"):
            v.bit_rate = 4_000_000  # flat grey frames must keep their exact level
        a = None
        if switch_at is not None:
            a = out.add_stream("aac", rate=RATE)
            a.layout = "mono"
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i if pts is None else pts[i]
            if time_base is not None:
                vf.time_base = time_base
            out.mux(v.encode(vf))
        out.mux(v.encode())
        if a is not None:
            n = int((seconds or len(frames) / fps) * RATE)
            t = np.arange(n) / RATE
            tone = np.where(t < switch_at, np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 880 * t))
            tone = (0.3 * tone).astype(np.float32)
            for s in range(0, n, 1024):
                af = av.AudioFrame.from_ndarray(tone[None, s:s + 1024], format="fltp", layout="mono")
                af.sample_rate, af.pts, af.time_base = RATE, s, Fraction(1, RATE)
                out.mux(a.encode(af))
            out.mux(a.encode())
    return path


def _audio(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as c:
        rate = c.streams.audio[0].codec_context.sample_rate
        chunks = [f.to_ndarray().mean(0) for f in c.decode(audio=0)]
    return np.concatenate(chunks), rate


def _dominant_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spec)])


def _metadata(path: Path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        meta = {"fps": v.average_rate, "codec": v.codec_context.name, "pix_fmt": v.codec_context.pix_fmt,
                "width": v.codec_context.width, "height": v.codec_context.height,
                "video_s": float(v.duration * v.time_base)}
        if c.streams.audio:
            a = c.streams.audio[0]
            meta["audio_s"] = float(a.duration * a.time_base)
            meta["audio_rate"] = a.codec_context.sample_rate
    return meta


@pytest.fixture
def clean_tmp(tmp_path, monkeypatch):
    """A private system temp dir, to prove nothing is left behind there."""
    sys_tmp = tmp_path / "systmp"
    sys_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(sys_tmp))
    return sys_tmp


def test_example_clip_reads_with_exact_fps_and_counted_frames():
    info = probe(EXAMPLE)
    assert (info.width, info.height, info.fps, info.n_frames, info.has_audio) == (320, 320, Fraction(25), 75, True)
    assert info.duration == pytest.approx(3.0)
    gen = iter_frames(EXAMPLE)
    assert inspect.isgenerator(gen)  # streamed, never the whole clip at once
    frames = list(gen)
    assert len(frames) == 75 and frames[0].dtype == np.uint8 and frames[0].shape == (320, 320, 3)


def test_write_keeps_fps_frames_and_audio_duration(tmp_path):
    frames, info = read_video(EXAMPLE)
    out = write_video(tmp_path / "out.mp4", frames, info.fps, audio=AudioSource.from_info(info))
    src, dst = _metadata(EXAMPLE), _metadata(out)
    assert dst["codec"] == "h264" and dst["pix_fmt"] == "yuv420p"
    assert dst["fps"] == src["fps"] == 25
    assert dst["video_s"] == pytest.approx(src["video_s"], abs=1e-6)
    assert dst["audio_s"] == pytest.approx(src["audio_s"], abs=0.03)  # within one AAC frame
    assert dst["audio_rate"] == src["audio_rate"]
    back, info2 = read_video(out)
    assert info2.n_frames == 75 and info2.fps == 25
    assert np.abs(back.astype(float) - frames).mean() < 2.0  # crf 18 re-encode of an already compressed clip
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # the temporary file was renamed, none left over


def test_trim_and_stride_keep_audio_in_sync(tmp_path):
    src = _make_clip(tmp_path / "tone.mp4", _level_frames(75), fps=25, switch_at=1.5)
    opts = ReadOptions(start=1.0, end=2.4, stride=2)
    info = probe(src, opts)
    frames = list(iter_frames(src, opts))
    # slots 25, 27, ..., 59 at 12.5 fps
    assert info.fps == Fraction(25, 2) and info.n_frames == len(frames) == 18
    assert [_frame_index(f) for f in frames] == list(range(25, 60, 2))
    out = write_video(tmp_path / "trim.mp4", frames, info.fps, audio=AudioSource.from_info(info))
    meta = _metadata(out)
    assert meta["fps"] == Fraction(25, 2)
    assert meta["audio_s"] == pytest.approx(18 / 12.5, abs=0.03)
    audio, rate = _audio(out)
    # the tone switches at 1.5 s of the source = 0.5 s into the trimmed output
    assert _dominant_hz(audio[int(0.30 * rate):int(0.48 * rate)], rate) == pytest.approx(440, abs=15)
    assert _dominant_hz(audio[int(0.52 * rate):int(0.70 * rate)], rate) == pytest.approx(880, abs=15)
    before = np.abs(audio[int(0.46 * rate):int(0.49 * rate)]).max()
    assert before > 0.1  # audio present right up to the switch: no silent gap or offset


def test_sub_range_edit_keeps_the_whole_audio_in_sync(tmp_path):
    src = _make_clip(tmp_path / "tone.mp4", _level_frames(50), fps=25, switch_at=1.2)
    info = probe(src)
    part = ReadOptions(start=0.8, end=1.6)  # the user edits frames 20..39 only
    edited = [255 - f for f in iter_frames(src, part)]
    out = write_video(tmp_path / "spliced.mp4", splice_frames(iter_frames(src), edited, 20), info.fps,
                      audio=AudioSource(str(src)))
    back, info2 = read_video(out)
    assert info2.n_frames == 50 and info2.fps == 25
    means = back.reshape(50, -1).mean(1)
    source = np.stack(list(iter_frames(src))).reshape(50, -1).mean(1)
    expected = np.concatenate([source[:20], 255 - source[20:40], source[40:]])
    assert np.abs(means - expected).max() < 3.0  # edited range inverted, the rest untouched (up to re-encoding)
    assert np.abs(means[20:40] - source[20:40]).min() > 5
    meta = _metadata(out)
    assert meta["audio_s"] == pytest.approx(2.0, abs=0.03)
    audio, rate = _audio(out)
    assert _dominant_hz(audio[int(1.0 * rate):int(1.18 * rate)], rate) == pytest.approx(440, abs=15)
    assert _dominant_hz(audio[int(1.22 * rate):int(1.40 * rate)], rate) == pytest.approx(880, abs=15)


def test_variable_frame_rate_is_resolved_to_constant(tmp_path):
    # 25 fps nominal, millisecond timestamps, frames 10-11 and 30 dropped (a stall), and 5 ms jitter elsewhere
    keep = [i for i in range(50) if i not in (10, 11, 30)]
    pts = [i * 40 + (5 if i % 7 == 3 else 0) for i in keep]
    src = _make_clip(tmp_path / "vfr.mkv", _level_frames(50)[keep], fps=25, pts=pts, time_base=Fraction(1, 1000),
                     fmt="matroska")
    info = probe(src)
    frames = list(iter_frames(src))
    assert info.fps == 25 and info.variable_frame_rate
    assert info.n_frames == len(frames) == 50  # 2.0 s stays 2.0 s
    idx = [_frame_index(f) for f in frames]
    assert idx[9:13] == [9, 9, 9, 12] and idx[29:32] == [29, 29, 31]  # gaps repeat the previous frame
    assert idx[3] == 3 and idx[-1] == 49


@pytest.mark.parametrize("suffix,fmt,codec", [
    (".mov", "mov", "libx264"), (".mkv", "matroska", "libx264"), (".webm", "webm", "libvpx-vp9"),
    (".avi", "avi", "mpeg4"), (".gif", "gif", "gif"),
])
def test_reads_common_containers(tmp_path, suffix, fmt, codec):
    frames = _level_frames(12, (32, 48))
    src = _make_clip(tmp_path / f"clip{suffix}", frames, fps=10, fmt=fmt, codec=codec)
    back, info = read_video(src)
    assert info.n_frames == 12 and info.fps == 10 and back.shape == (12, 32, 48, 3)
    assert [_frame_index(f) for f in back] == list(range(12))


def test_rotation_metadata_is_applied_like_ffmpeg(tmp_path):
    import imageio_ffmpeg

    rng = np.random.default_rng(0)
    base = np.repeat(np.repeat(rng.integers(0, 255, (3, 12, 16, 3), dtype=np.uint8), 4, 1), 4, 2)  # 48x64 blocks
    plain = _make_clip(tmp_path / "plain.mp4", base, fps=10)
    rotated = tmp_path / "rotated.mp4"
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run([exe, "-v", "error", "-display_rotation", "90", "-i", str(plain), "-c", "copy", str(rotated)],
                   check=True)
    frames, info = read_video(rotated)
    assert info.rotation in (90, -90) and frames.shape == (3, 64, 48, 3)
    # ffmpeg's own decoder auto-rotates: the reference for how players show the clip
    raw = subprocess.run([exe, "-v", "error", "-i", str(rotated), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         check=True, capture_output=True).stdout
    ref = np.frombuffer(raw, np.uint8).reshape(3, 64, 48, 3)
    assert np.abs(frames.astype(float) - ref).mean() < 2.0


def test_writer_pads_odd_sizes_and_side_by_side(tmp_path):
    frames = _level_frames(5, (31, 45))
    out = write_video(tmp_path / "odd.mp4", frames, 24)
    meta = _metadata(out)
    assert (meta["width"], meta["height"]) == (46, 32) and meta["fps"] == 24
    panel = side_by_side([frames[0], frames[1], frames[2]], ["input", "direct", "consistent"])
    assert panel.shape == (31, 135, 3)
    assert (panel[:, 45:90] != frames[1]).any() and panel[-1, 60] .tolist() == frames[1][-1, 15].tolist()
    sbs = write_side_by_side(tmp_path / "sbs.mp4", [frames, frames, frames], 24, height=64)
    meta = _metadata(sbs)
    assert (meta["height"], meta["width"]) == (64, 280)  # 3 panels of 93 px (45 * 64 / 31), padded to even


def test_bad_inputs_raise_clear_errors_and_leave_nothing(tmp_path, clean_tmp):
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n" * 20)
    png = tmp_path / "still.png"
    with av.open(str(png), "w", format="image2") as c:
        s = c.add_stream("png", rate=1)
        s.width, s.height, s.pix_fmt = 16, 16, "rgb24"
        c.mux(s.encode(av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")))
        c.mux(s.encode())
    wav = tmp_path / "sound.wav"
    with av.open(str(wav), "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        s.layout = "mono"
        f = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        f.sample_rate, f.pts = 8000, 0
        c.mux(s.encode(f))
        c.mux(s.encode())
    good = _make_clip(tmp_path / "good.mp4", _level_frames(30, (32, 32)), fps=10, faststart=False)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # moov atom (at the end) lost
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 255, 5000, dtype=np.uint8).tobytes())
    empty_file = tmp_path / "empty.mp4"
    empty_file.write_bytes(b"")
    no_frames = tmp_path / "noframes.avi"  # avi keeps a video track with no packet (mp4/mkv drop it)
    with av.open(str(no_frames), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        c.start_encoding()  # header with a video track, then no packet at all

    for path, error, words in [
        (text, NotAVideo, "not a video"), (png, NotAVideo, "still image"), (wav, NotAVideo, "without a video"),
        (tmp_path / "missing.mp4", NotAVideo, "does not exist"), (truncated, CorruptVideo, "damaged"),
        (garbage, CorruptVideo, "damaged"), (empty_file, CorruptVideo, "empty"),
        (no_frames, EmptyVideo, "no video frames"),
    ]:
        with pytest.raises(error, match=words):
            probe(path)
    with pytest.raises(VideoTooLong, match=r"more than 20 frames.*Trim"):
        probe(good, limits=VideoLimits(max_frames=20))
    with pytest.raises(VideoTooLong, match=r"longer than 2 s"):
        probe(good, limits=VideoLimits(max_seconds=2.0))
    assert probe(good, ReadOptions(end=2.0), VideoLimits(max_seconds=2.0)).n_frames == 20  # trimming fixes it
    assert probe(good, ReadOptions(stride=2), VideoLimits(max_frames=20)).n_frames == 15  # so does a stride
    with pytest.raises(VideoTooLarge, match="Downscale"):
        probe(good, limits=VideoLimits(max_side=16))
    small = probe(good, ReadOptions(max_side=16), VideoLimits(max_side=16))
    assert (small.width, small.height) == (16, 16) and next(iter_frames(good, ReadOptions(max_side=16))).shape == (
        16, 16, 3)
    with pytest.raises(EmptyVideo, match="trim range"):
        probe(good, ReadOptions(start=10.0))

    # a failing write leaves neither the output nor its temporary file
    with pytest.raises(RuntimeError):
        with VideoWriter(tmp_path / "failed.mp4", 10) as writer:
            writer.write(np.zeros((32, 32, 3), np.uint8))
            raise RuntimeError("edit crashed")
    with pytest.raises(EmptyVideo):
        write_video(tmp_path / "nothing.mp4", [], 10)
    assert not (tmp_path / "failed.mp4").exists() and not (tmp_path / "nothing.mp4").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["notes.txt", "still.png", "sound.wav", "good.mp4", "truncated.mp4", "garbage.mp4", "empty.mp4",
         "noframes.avi", "systmp"])
    assert os.listdir(clean_tmp) == []


def test_video_starting_late_keeps_audio_on_the_same_clock(tmp_path):
    # the first video frame is at 0.4 s of the container, the audio starts at 0 and switches tone at 1.2 s
    src = _make_clip(tmp_path / "late.mp4", _level_frames(40), fps=25, pts=[i + 10 for i in range(40)],
                     switch_at=1.2, seconds=2.0)
    info = probe(src)
    assert info.t0 == pytest.approx(0.4, abs=1e-3) and info.start == 0 and info.n_frames == 40
    out = write_video(tmp_path / "out.mp4", iter_frames(src), info.fps, audio=AudioSource.from_info(info))
    audio, rate = _audio(out)
    assert len(audio) / rate == pytest.approx(1.6, abs=0.03)
    # 1.2 s of the container is 0.8 s into the output
    assert _dominant_hz(audio[int(0.60 * rate):int(0.78 * rate)], rate) == pytest.approx(440, abs=15)
    assert _dominant_hz(audio[int(0.82 * rate):int(1.00 * rate)], rate) == pytest.approx(880, abs=15)

"""Video in and out: decoding to constant-frame-rate uint8 RGB frames, limits, and H.264 mp4 writing with the audio.

Reading goes through PyAV (FFmpeg libraries bundled in its wheel), so no system ffmpeg is needed. Frames come from a
generator (`iter_frames`), so a long clip is never held whole at full resolution; call it again for another pass.

Timing model: every decoded frame is placed on a constant-rate grid of slots (slot = round((t - t0) * fps)). A slot
without a frame repeats the previous one, a slot hit twice keeps the first: this turns a variable frame rate into a
constant one, and the number of frames is whatever decodes (the container's frame-count field is never used).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from tcve.errors import CorruptVideo, EmptyVideo, NotAVideo, VideoTooLarge, VideoTooLong

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".webm", ".avi", ".mkv", ".gif")
# Demuxers that open still images as one-frame "videos": a photo is not a video for this tool.
_IMAGE_FORMATS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "apng")


@dataclass(frozen=True)
class VideoLimits:
    """What the app accepts. `None` disables a limit."""

    max_frames: int | None = 900  # after trim and stride
    max_seconds: float | None = 60.0  # duration of the (trimmed) clip
    max_side: int | None = 3840  # longest side in pixels, after rotation and downscale


@dataclass(frozen=True)
class ReadOptions:
    """Which part of the clip to read and how: the app offers these when a clip is over the limits."""

    start: float = 0.0  # seconds
    end: float | None = None  # seconds, exclusive; None = to the end
    stride: int = 1  # keep every `stride`-th frame (the output fps is divided by it)
    max_side: int | None = None  # downscale so the longest side is at most this (keeps the aspect, even sizes)


@dataclass(frozen=True)
class VideoInfo:
    """Facts about a clip as `iter_frames` will deliver it (after rotation, trim, stride and downscale)."""

    path: str
    width: int
    height: int
    fps: Fraction  # constant output rate
    n_frames: int  # frames that actually decode (after trim/stride)
    rotation: int  # degrees counter-clockwise applied to the stored pixels
    start: float  # seconds from the clip's first frame to the first delivered frame (the trim start on the fps grid)
    has_audio: bool
    source_width: int
    source_height: int
    source_fps: Fraction
    variable_frame_rate: bool
    t0: float = 0.0  # container time (s) of the clip's first frame; audio is cut on that clock
    # The file ends early (damaged or cut-off tail): (frames that decoded, frames the container declares), counted
    # on the source's frame grid before trim and stride. Reading stops at the damage. None: the file is whole.
    damaged: tuple[int, int] | None = None

    @property
    def duration(self) -> float:
        return self.n_frames / float(self.fps)

    @property
    def end(self) -> float:
        return self.start + self.duration


# ----------------------------------------------------------------------------------------------------------- reading


def _open(path: str | os.PathLike) -> av.container.InputContainer:
    path = str(path)
    if not os.path.isfile(path):
        raise NotAVideo(f"'{path}' does not exist or is not a file.")
    if os.path.getsize(path) == 0:
        raise CorruptVideo(f"'{Path(path).name}' is empty (0 bytes).")
    try:
        container = av.open(path, mode="r")
    except (av.error.FFmpegError, OSError) as exc:  # InvalidData, EOF, permission, ...
        if path.lower().endswith(VIDEO_EXTENSIONS):
            raise CorruptVideo(
                f"'{Path(path).name}' could not be opened as a video; the file looks damaged or truncated ({exc})."
            ) from None
        raise NotAVideo(
            f"'{Path(path).name}' is not a video this tool can read (supported: mp4, mov, webm, avi, mkv, gif)."
        ) from None
    fmt = container.format.name
    if not container.streams.video or any(name in fmt.split(",") for name in _IMAGE_FORMATS):
        what = "a still image" if container.streams.video else "a file without a video track"
        container.close()
        raise NotAVideo(f"'{Path(path).name}' is {what}, not a video (supported: mp4, mov, webm, avi, mkv, gif).")
    return container


def _stream_fps(stream: av.video.stream.VideoStream) -> tuple[Fraction, bool]:
    """Constant rate to resample to, and whether the stream looks variable-rate."""
    avg, guessed, base = stream.average_rate, stream.guessed_rate, stream.base_rate
    candidates = [Fraction(r) for r in (avg, guessed, base) if r is not None and r > 0]
    if not candidates:
        return Fraction(25), True
    fps = candidates[0]
    vfr = bool(guessed and avg and abs(float(guessed) - float(avg)) > 0.01 * float(avg))
    # Variable rate (dropped or irregular frames): the nominal rate (r_frame_rate) is what the camera meant; the
    # average rate would shorten every frame. Ignore a nominal rate far from the average (a timestamp glitch).
    if vfr and 0.9 * float(avg) <= float(guessed) <= 1.25 * float(avg) and float(guessed) <= 120:
        fps = Fraction(guessed)
    for common in (Fraction(24000, 1001), Fraction(30000, 1001), Fraction(60000, 1001), *map(Fraction, (
        10, 12, 15, 20, 24, 25, 30, 48, 50, 60, 90, 100, 120,
    ))):
        if abs(float(fps) - float(common)) < 0.01 * float(common) and fps != common:
            fps = common
            break
    if fps.denominator > 1001:
        fps = fps.limit_denominator(1001)
    return fps, vfr


def _slots(path: str | os.PathLike, decode_pixels: bool, irregular: list[int] | None = None,
           meta: dict | None = None) -> Iterator[tuple[int, av.VideoFrame | None, int]]:
    """Yields (slot index, frame, rotation) on the constant-rate grid, before trim/stride. Raises CorruptVideo.

    `irregular`, if given, gets one entry per repeated or dropped slot (evidence of a variable frame rate);
    `meta`, if given, gets "t0": the container time of slot 0 in seconds (audio is cut on the same clock).
    """
    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps, _ = _stream_fps(stream)
        t0: float | None = None
        next_slot = 0
        last, started = None, False
        try:
            for frame in container.decode(stream):
                t = frame.time
                if t is None:  # no timestamps at all: trust decode order
                    t = (t0 or 0.0) + next_slot / float(fps)
                if t0 is None:
                    t0 = t
                    if meta is not None:
                        meta["t0"] = t0
                slot = int(round((t - t0) * float(fps)))
                if slot < next_slot:  # two frames in one slot (VFR burst): keep the first
                    if irregular is not None:
                        irregular.append(slot)
                    continue
                rotation = int(round(frame.rotation or 0)) if decode_pixels else 0
                while next_slot < slot and started:  # gap (VFR stall): repeat the previous frame
                    if irregular is not None:
                        irregular.append(next_slot)
                    yield next_slot, last, rotation
                    next_slot += 1
                last, started = (frame if decode_pixels else None), True
                yield slot, last, rotation
                next_slot = slot + 1
        except (av.error.InvalidDataError, av.error.EOFError, av.error.FFmpegError) as exc:
            if next_slot == 0:
                name = Path(str(path)).name
                raise CorruptVideo(f"'{name}' could not be decoded; the file looks damaged ({exc}).") from None
            # A damaged tail is common in real uploads: keep what decoded, say so.
            logger.warning("%s: decoding stopped after %d frames (%s)", path, next_slot, exc)
            if meta is not None:
                meta["decode_error"] = True
        if meta is not None:
            meta["declared"] = _declared_frames(stream, fps)
    finally:
        container.close()


def _declared_frames(stream: av.video.stream.VideoStream, fps: Fraction) -> int | None:
    """How many frames the container says the stream has (its frame count, else its duration), if it says."""
    if stream.frames:
        return int(stream.frames)
    if stream.duration and stream.time_base:
        return int(round(float(stream.duration * stream.time_base) * float(fps)))
    return None


def _damage(decoded: int, meta: dict) -> tuple[int, int] | None:
    """(decoded, declared) when the file ends well before what its container declares, or decoding failed."""
    declared = meta.get("declared")
    short = declared is not None and declared - decoded > max(2, 0.05 * declared)
    if short or meta.get("decode_error"):
        return decoded, int(declared) if declared is not None else decoded
    return None


def _output_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    # even sizes so the H.264 writer needs no padding
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def _slot_range(fps: Fraction, opts: ReadOptions) -> tuple[int, int | None]:
    if opts.start < 0 or (opts.end is not None and opts.end <= opts.start):
        raise ValueError(f"invalid trim range start={opts.start} end={opts.end}")
    if opts.stride < 1:
        raise ValueError(f"stride must be >= 1, got {opts.stride}")
    first = int(math.ceil(opts.start * float(fps) - 1e-6))
    stop = None if opts.end is None else int(math.ceil(opts.end * float(fps) - 1e-6))
    return first, stop


def _to_rgb(frame: "av.VideoFrame", rotation: int, size: tuple[int, int] | None) -> np.ndarray:
    rgb = frame.to_ndarray(format="rgb24")
    k = (rotation // 90) % 4  # display matrix angle is counter-clockwise, like np.rot90
    if k:
        rgb = np.ascontiguousarray(np.rot90(rgb, k))
    if size is not None and (rgb.shape[1], rgb.shape[0]) != size:
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return rgb


def probe(path: str | os.PathLike, options: ReadOptions = ReadOptions(),
          limits: VideoLimits | None = VideoLimits()) -> VideoInfo:
    """Counts the frames that decode (cheaply, no colour conversion) and checks the limits.

    Raises NotAVideo, CorruptVideo, EmptyVideo, VideoTooLong (frames or seconds) or VideoTooLarge (resolution), each
    with a message saying what to change (trim by start/end, a frame stride, or a downscale).
    """
    container = _open(path)
    try:
        stream = container.streams.video[0]
        fps, vfr = _stream_fps(stream)
        has_audio = bool(container.streams.audio)
        src_w, src_h = stream.codec_context.width, stream.codec_context.height
    finally:
        container.close()
    first, stop = _slot_range(fps, options)
    out_fps = fps / options.stride
    name = Path(str(path)).name
    n = 0
    rotation = 0
    width = height = 0
    hard_cap = None
    if limits is not None and limits.max_frames is not None:
        hard_cap = limits.max_frames
    if limits is not None and limits.max_seconds is not None:
        cap_s = int(math.floor(limits.max_seconds * float(out_fps) + 1e-6))
        hard_cap = cap_s if hard_cap is None else min(hard_cap, cap_s)
    last_slot = -1
    container_rot = None
    irregular: list[int] = []
    meta: dict = {}
    read_to_the_end = True
    for slot, _, _ in _slots(path, decode_pixels=False, irregular=irregular, meta=meta):
        last_slot = slot
        if slot < first or (stop is not None and slot >= stop) or (slot - first) % options.stride:
            if stop is not None and slot >= stop:
                read_to_the_end = False
                break
            continue
        n += 1
        if hard_cap is not None and n > hard_cap:
            read_to_the_end = False
            break
    if n == 0:
        if last_slot < 0:
            raise EmptyVideo(f"'{name}' contains no video frames.")
        raise EmptyVideo(f"'{name}': the trim range {options.start:.2f}-{options.end} s contains no frames "
                         f"(the clip has {last_slot + 1} frames at {float(fps):.3f} fps).")
    # Rotation and decoded size come from the first frame (the display matrix lives in the frame side data).
    for _, frame, rot in _slots(path, decode_pixels=True):
        container_rot = rot
        rgb = _to_rgb(frame, rot, None)
        height, width = rgb.shape[:2]
        break
    rotation = container_rot or 0
    out_w, out_h = _output_size(width, height, options.max_side)
    info = VideoInfo(
        path=str(path), width=out_w, height=out_h, fps=out_fps, n_frames=n, rotation=rotation,
        start=first / float(fps), has_audio=has_audio, source_width=src_w, source_height=src_h, source_fps=fps,
        variable_frame_rate=vfr or bool(irregular), t0=float(meta.get("t0", 0.0)),
        damaged=_damage(last_slot + 1, meta) if read_to_the_end else None,
    )
    if limits is not None:
        _check_limits(info, limits, hard_cap, name)
    return info


def _check_limits(info: VideoInfo, limits: VideoLimits, hard_cap: int | None, name: str) -> None:
    hint = ("Trim it (start/end time: --start/--end, or the app's trim fields) or keep every n-th frame (stride: "
            "--stride, or the app's 'frame stride')")
    if limits.max_frames is not None and info.n_frames > limits.max_frames:
        raise VideoTooLong(f"'{name}' has more than {limits.max_frames} frames at {float(info.fps):.3f} fps "
                           f"(the limit). {hint}.")
    if limits.max_seconds is not None and hard_cap is not None and info.n_frames > hard_cap:
        raise VideoTooLong(f"'{name}' is longer than {limits.max_seconds:g} s (the limit). {hint}.")
    if limits.max_side is not None and max(info.width, info.height) > limits.max_side:
        raise VideoTooLarge(
            f"'{name}' is {info.width}x{info.height}, larger than the {limits.max_side} px limit on the longest side. "
            f"Downscale it (max_side={limits.max_side}: --max-side {limits.max_side}, or the app's 'downscale to')."
        )


def iter_frames(path: str | os.PathLike, options: ReadOptions = ReadOptions()) -> Iterator[np.ndarray]:
    """Yields frames [H,W,3] uint8 RGB at the constant rate of `probe(path, options).fps`, rotation applied.

    Only one decoded frame is alive at a time; call again for another pass over the same clip.
    """
    container = _open(path)
    try:
        fps, _ = _stream_fps(container.streams.video[0])
    finally:
        container.close()
    first, stop = _slot_range(fps, options)
    size = None
    cache: tuple[object, np.ndarray] | None = None  # repeated slots (VFR gaps) reuse the conversion
    for slot, frame, rot in _slots(path, decode_pixels=True):
        if stop is not None and slot >= stop:
            break
        if slot < first or (slot - first) % options.stride:
            continue
        if cache is not None and cache[0] is frame:
            yield cache[1].copy()
            continue
        rgb = _to_rgb(frame, rot, None)
        if size is None:
            size = _output_size(rgb.shape[1], rgb.shape[0], options.max_side)
        if (rgb.shape[1], rgb.shape[0]) != size:
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        cache = (frame, rgb)
        yield rgb.copy()


def read_video(
    path: str | os.PathLike, options: ReadOptions = ReadOptions(), limits: VideoLimits | None = VideoLimits()
) -> tuple[np.ndarray, VideoInfo]:
    """Whole clip in memory: frames [T,H,W,3] uint8 RGB and its info. For short clips; `iter_frames` streams."""
    info = probe(path, options, limits)
    frames = np.stack(list(iter_frames(path, options)))
    if len(frames) != info.n_frames:  # cannot happen unless the file changed between the passes
        raise CorruptVideo(f"'{Path(str(path)).name}' decoded to {len(frames)} frames, expected {info.n_frames}.")
    return frames, info


# ----------------------------------------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class AudioSource:
    """Audio to mux into an output: the time range [start, end) of `path`'s first audio track (seconds)."""

    path: str
    start: float = 0.0
    end: float | None = None

    @staticmethod
    def from_info(info: VideoInfo) -> AudioSource | None:
        """The audio matching exactly the frames `iter_frames(info.path, options)` delivered."""
        if not info.has_audio:
            return None
        return AudioSource(info.path, info.t0 + info.start, info.t0 + info.end)


def _even(n: int) -> int:
    return n + (n % 2)


class VideoWriter:
    """H.264 mp4 (yuv420p, even sizes, +faststart so browsers can play it progressively), optional audio.

    Writes to a temporary file beside `path` and renames it on success; on any error nothing is left behind.
    Use as a context manager; `write(frame)` takes [H,W,3] uint8 RGB frames of a constant size.
    """

    def __init__(self, path: str | os.PathLike, fps: Fraction | float, audio: AudioSource | None = None, crf: int = 18,
                 preset: str = "medium"):
        self.path = Path(path)
        self.fps = Fraction(fps).limit_denominator(1001) if not isinstance(fps, Fraction) else fps
        self.audio, self.crf, self.preset = audio, crf, preset
        self.n_frames = 0
        fd, tmp = tempfile.mkstemp(suffix=".mp4", prefix=f".{self.path.stem}.", dir=self.path.parent or ".")
        os.close(fd)
        self._tmp = Path(tmp)
        self._container = None
        self._stream = None
        self._size: tuple[int, int] | None = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _start(self, width: int, height: int) -> None:
        self._container = av.open(str(self._tmp), mode="w", format="mp4", options={"movflags": "+faststart"})
        stream = self._container.add_stream("libx264", rate=self.fps)
        stream.width, stream.height = _even(width), _even(height)
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, 1) / self.fps
        stream.options = {"crf": str(self.crf), "preset": self.preset}
        self._stream = stream
        self._size = (width, height)
        # every stream must exist before the first packet is written (the mp4 header lists them)
        self._audio_stream = _add_audio_stream(self._container, self.audio) if self.audio is not None else None

    def write(self, frame: np.ndarray) -> None:
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frames must be [H,W,3] uint8 RGB, got {frame.dtype} {frame.shape}")
        h, w = frame.shape[:2]
        if self._container is None:
            self._start(w, h)
        elif (w, h) != self._size:
            raise ValueError(f"frame size changed from {self._size} to {(w, h)}")
        if w % 2 or h % 2:  # yuv420p needs even sizes: replicate the last row/column
            frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        vf.pts = self.n_frames
        for packet in self._stream.encode(vf):
            self._container.mux(packet)
        self.n_frames += 1

    def close(self) -> Path:
        try:
            if self._container is None:
                raise EmptyVideo("no frames were written")
            for packet in self._stream.encode():
                self._container.mux(packet)
            if self._audio_stream is not None:
                duration = self.n_frames / float(self.fps)
                _mux_audio(self._container, self._audio_stream, self.audio, duration)
            self._container.close()
            self._container = None
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # the file is being discarded anyway
                pass
            self._container = None
        self._tmp.unlink(missing_ok=True)


def _add_audio_stream(out: av.container.OutputContainer, source: AudioSource) -> "av.audio.stream.AudioStream | None":
    with av.open(source.path) as src:
        if not src.streams.audio:
            logger.warning("%s has no audio track; writing video only", source.path)
            return None
        ctx = src.streams.audio[0].codec_context
        rate = ctx.sample_rate or 44100
        layout = "stereo" if (ctx.channels or 2) >= 2 else "mono"
    a_out = out.add_stream("aac", rate=rate)
    a_out.layout = layout
    a_out.time_base = Fraction(1, rate)
    return a_out


def _mux_audio(out: av.container.OutputContainer, a_out: "av.audio.stream.AudioStream", source: AudioSource,
               video_duration: float) -> None:
    """Re-encodes [start, start + video_duration) of the source's audio to AAC, starting at t=0 of the output.

    Re-encoding (rather than copying packets) lets the cut land on the exact sample: audio stays in sync after a trim.
    """
    src = av.open(source.path)
    try:
        a_in = src.streams.audio[0]
        rate = a_out.codec_context.sample_rate
        layout = a_out.layout.name
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        end = source.start + video_duration if source.end is None else min(source.end, source.start + video_duration)
        first_sample = int(round(source.start * rate))
        last_sample = int(round(end * rate))
        fifo = av.AudioFifo()
        position: int | None = None  # source-timeline sample index of the next resampled sample
        written = 0  # samples pushed into the output so far
        for frame in src.decode(a_in):
            if position is None:
                position = int(round(float(frame.time or 0.0) * rate))
            for rf in resampler.resample(frame):
                arr = rf.to_ndarray()  # [C, n] float32 planar
                n = arr.shape[1]
                lo, hi = max(first_sample + written - position, 0), min(last_sample - position, n)
                if written == 0 and position > first_sample and hi > 0:  # audio starts late: pad with silence
                    gap = min(position, last_sample) - first_sample
                    fifo.write(_audio_frame(np.zeros((arr.shape[0], gap), np.float32), layout, rate))
                    written += gap
                if lo < hi:
                    fifo.write(_audio_frame(arr[:, lo:hi], layout, rate))
                    written += hi - lo
                position += n
            if position is not None and position >= last_sample:
                break
        pts = 0
        frame_size = a_out.codec_context.frame_size or 1024
        while fifo.samples:
            chunk = fifo.read(min(frame_size, fifo.samples))
            chunk.pts = pts
            chunk.time_base = Fraction(1, rate)
            pts += chunk.samples
            for packet in a_out.encode(chunk):
                out.mux(packet)
        for packet in a_out.encode(None):
            out.mux(packet)
    finally:
        src.close()


def _audio_frame(arr: np.ndarray, layout: str, rate: int) -> "av.AudioFrame":
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr, dtype=np.float32), format="fltp", layout=layout)
    frame.sample_rate = rate
    return frame


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: Fraction | float,
                audio: AudioSource | None = None, crf: int = 18) -> Path:
    """Writes frames ([H,W,3] uint8 RGB, any iterable, consumed lazily) as H.264 mp4 with optional audio."""
    with VideoWriter(path, fps, audio=audio, crf=crf) as writer:
        for frame in frames:
            writer.write(frame)
    return Path(path)


def splice_frames(originals: Iterable[np.ndarray], edited: Iterable[np.ndarray], start: int) -> Iterator[np.ndarray]:
    """The whole clip with frames [start, start + len(edited)) replaced by `edited` (both streamed).

    Write the result with `AudioSource(info.path)` (whole clip) so the untouched audio stays in sync when only a
    sub-range of frames was edited.
    """
    edited_iter = iter(edited)
    for i, frame in enumerate(originals):
        if i >= start:
            replacement = next(edited_iter, None)
            if replacement is not None:
                if replacement.shape != frame.shape:
                    raise ValueError(f"edited frame {i} has shape {replacement.shape}, the clip {frame.shape}")
                yield replacement
                continue
        yield frame


# ----------------------------------------------------------------------------------------------------- side by side


def side_by_side(frames: Sequence[np.ndarray], labels: Sequence[str] | None = None,
                 height: int | None = None) -> np.ndarray:
    """Panels [H,W,3] uint8 next to each other (resized to a common height), each labelled at its top-left corner."""
    if not frames:
        raise ValueError("side_by_side needs at least one frame")
    h = height or frames[0].shape[0]
    panels = []
    for i, frame in enumerate(frames):
        if frame.shape[0] != h:
            w = max(2, int(round(frame.shape[1] * h / frame.shape[0])))
            frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
        panel = np.ascontiguousarray(frame.copy())
        if labels is not None and i < len(labels) and labels[i]:
            scale = max(0.4, h / 720)
            thick = max(1, int(round(2 * scale)))
            (tw, th), base = cv2.getTextSize(labels[i], cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
            pad = int(6 * scale)
            cv2.rectangle(panel, (0, 0), (tw + 2 * pad, th + base + 2 * pad), (0, 0, 0), -1)
            cv2.putText(panel, labels[i], (pad, th + pad), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick,
                        cv2.LINE_AA)
        panels.append(panel)
    return np.concatenate(panels, axis=1)


def write_side_by_side(path: str | os.PathLike, streams: Sequence[Iterable[np.ndarray]], fps: Fraction | float,
                       labels: Sequence[str] = ("input", "direct", "consistent"), audio: AudioSource | None = None,
                       height: int | None = None) -> Path:
    """Comparison video: one panel per stream (e.g. input | direct | consistent), labelled; stops at the shortest."""
    return write_video(path, (side_by_side(list(group), labels, height) for group in zip(*streams)), fps, audio=audio)


__all__ = [
    "VIDEO_EXTENSIONS", "AudioSource", "ReadOptions", "VideoInfo", "VideoLimits", "VideoWriter", "iter_frames", "probe",
    "read_video", "side_by_side", "splice_frames", "write_side_by_side", "write_video",
]

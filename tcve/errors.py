"""User-facing errors. Every message is meant to be shown as is, in the app or the CLI."""

from __future__ import annotations


class TcveError(Exception):
    """Base class: an error whose message a user can act on."""


class CheckpointUnavailable(TcveError):
    """A registered checkpoint could not be found locally nor downloaded."""

    def __init__(self, name: str, repo_id: str | None, filename: str | None, reason: str = ""):
        self.name, self.repo_id, self.filename, self.reason = name, repo_id, filename, reason
        where = f"{repo_id}/{filename}" if repo_id else (filename or "?")
        hint = (
            f"Checkpoint '{name}' ({where}) is not available"
            + (f": {reason}" if reason else "")
            + f". Download it when online, or place the file as $TCVE_CHECKPOINT_DIR/{filename or name} "
            "(or pass a local path)."
        )
        super().__init__(hint)


class BadRequest(TcveError):
    """A request that makes no sense (trim end before start, a strength outside the edit's range, an unknown
    preset): the CLI exits with its usage code (2), the app shows the message."""


class EditUnavailable(TcveError):
    """A catalogue edit whose networks the active model set lacks (the CLI exits with code 4, like a missing
    checkpoint); the message lists what the set offers."""


class CheckpointFormatError(TcveError):
    """A checkpoint file is not in the format its loader expects (or failed its hash check)."""


class VideoError(TcveError):
    """Base class for problems with an input video."""


class NotAVideo(VideoError):
    pass


class CorruptVideo(VideoError):
    pass


class VideoTooLong(VideoError):
    pass


class NoFaceFound(TcveError):
    pass


class EmptyVideo(VideoError):
    """The file (or the chosen trim range) holds no decodable video frame."""


class VideoTooLarge(VideoError):
    """The frame size is over the configured limit; the message says how to downscale."""


class Cancelled(TcveError):
    """A long-running stage was stopped by the user (its cancel check returned True)."""

"""Reading frames out of encoded audio, trusting a file's frame count only where the format makes it exact.

WAV, FLAC, AIFF and the other PCM containers state their length exactly, so a read that stops short is
damage (`truncated_audio`). MP3 and Ogg do not: libmpg123 estimates an MP3's length from its Xing/LAME
header or, without one, from the file size and the first frame's bitrate (ID3 padding and VBR make that
wrong either way), and libsndfile stops reading at that estimate. For those formats the decoded length is
the truth: a short read is the real end, a crop window is chosen from the decoded length, and an MP3 whose
estimate was reached is read on through a pipe, where libsndfile has no estimate to stop at.

Every failure raises `BadSample(reason)`; one rule serves training, check-data, make-shards and inference.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator

import numpy as np
import soundfile as sf

from clap_train.data.skips import BadSample

BLOCK = 1 << 16  # frames per read while decoding to the end: memory stays bounded for any length

# libsndfile's containers whose frame count comes from a header or an exact size, never an estimate
EXACT_FORMATS = frozenset({"WAV", "WAVEX", "RF64", "W64", "FLAC", "AIFF", "AU", "CAF", "NIST", "IRCAM", "VOC"})

# container formats libsndfile reports, by member extension
FORMATS = {
    "flac": {"FLAC"},
    "wav": {"WAV", "WAVEX", "RF64", "W64"},
    "ogg": {"OGG"},
    "opus": {"OGG"},
    "mp3": {"MP3", "MPEG"},
    "aiff": {"AIFF"},
    "aif": {"AIFF"},
    "au": {"AU"},
}


def open_audio(data: bytes, ext: str | None = None) -> sf.SoundFile:
    """Open encoded audio (no decoding yet); a format the extension does not name is `mislabeled_audio`."""
    try:
        f = sf.SoundFile(io.BytesIO(data))
    except Exception as e:  # libsndfile raises several types for unknown or damaged formats
        # its message starts "Error opening <_io.BytesIO object at 0x...>: ": keep only the reason
        raise BadSample("corrupt_audio", str(e).split(">: ", 1)[-1][:120]) from None
    if ext in FORMATS and f.format not in FORMATS[ext]:
        f.close()
        raise BadSample("mislabeled_audio", f".{ext} member holds {f.format}")
    if f.samplerate <= 0 or f.frames <= 0:
        f.close()
        raise BadSample("empty_audio", f"{f.channels} channels, {f.frames} frames at {f.samplerate} Hz")
    return f


def exact_length(f: sf.SoundFile) -> bool:
    return f.format in EXACT_FORMATS


def _read(f: sf.SoundFile, frames: int) -> np.ndarray:
    try:
        return f.read(frames, dtype="float32", always_2d=True)
    except Exception as e:
        raise BadSample("corrupt_audio", str(e)[:120]) from None


def _blocks_from(f: sf.SoundFile, start: int = 0) -> Iterator[np.ndarray]:
    try:
        if start:
            f.seek(start)
    except Exception as e:
        raise BadSample("corrupt_audio", str(e)[:120]) from None
    while (x := _read(f, BLOCK)).shape[0]:
        yield x


class _Pipe:
    """`data` fed to libsndfile through an OS pipe: libsndfile cannot seek a pipe, so it has no length to
    stop at and decodes to the stream's real end. `seekable` is libsndfile's word that the header's count
    is exact after all (an MP3 with a Xing/LAME header)."""

    def __init__(self, data: bytes):
        r, w = os.pipe()
        self._writer = threading.Thread(target=self._feed, args=(w, data), daemon=True)
        self._writer.start()
        try:
            self.file = sf.SoundFile(r, closefd=True)
        except Exception as e:
            os.close(r)
            self._writer.join()
            raise BadSample("corrupt_audio", str(e)[:120]) from None

    @staticmethod
    def _feed(w: int, data: bytes) -> None:
        try:
            with os.fdopen(w, "wb") as fh:
                fh.write(data)
        except (BrokenPipeError, OSError):  # the reader stopped early: nothing more is wanted
            pass

    def close(self) -> None:
        self.file.close()
        self._writer.join()


def decoded_length(data: bytes, f: sf.SoundFile, limit: int, keep: int = 0) -> tuple[int, np.ndarray]:
    """The frames an estimated-length file really decodes to (at most `limit` + 1: longer is too long),
    and its first `keep` frames, decoded on the way (a clip from the start needs no second decode)."""
    n, head = 0, []
    for x in _blocks_until(f, limit):
        if n < keep:
            head.append(x[: keep - n])
        n += x.shape[0]
    if n == f.frames and f.format == "MP3":  # libsndfile stopped at the estimate: is there more?
        pipe = _Pipe(data)
        try:
            if not pipe.file.seekable():  # seekable: the header's count is exact
                n = sum(x.shape[0] for x in _blocks_until(pipe.file, limit))
        finally:
            pipe.close()
    # otherwise an over-estimate (or Ogg, whose count is read from its last page): decoded is the truth
    return n, np.concatenate(head) if head else np.zeros((0, f.channels), np.float32)


def _blocks_until(f: sf.SoundFile, limit: int) -> Iterator[np.ndarray]:
    n = 0
    for x in _blocks_from(f):
        yield x
        n += x.shape[0]
        if n > limit:
            return


def read_frames(data: bytes, f: sf.SoundFile, start: int, frames: int) -> np.ndarray:
    """`frames` frames from `start` ([frames, channels] float32), fewer only at the real end of an
    estimated-length file; a short read of an exact-length file is `truncated_audio`."""
    if exact_length(f) or start + frames <= f.frames:
        try:
            if start:
                f.seek(start)
        except Exception as e:
            raise BadSample("corrupt_audio", str(e)[:120]) from None
        x = _read(f, frames)
    else:  # beyond an MP3's estimate: only a pipe reads there
        x = _collect(data, start, frames)
    if x.shape[0] == 0:
        raise BadSample("corrupt_audio", "no frames decoded")
    if exact_length(f) and x.shape[0] < frames:
        raise BadSample("truncated_audio", f"{x.shape[0]} of {frames} frames decoded")
    return x


def _collect(data: bytes, start: int, frames: int) -> np.ndarray:
    pipe = _Pipe(data)
    try:
        if pipe.file.seekable():  # the count was exact after all: nothing lies beyond it
            return np.zeros((0, pipe.file.channels), np.float32)
        out, pos, got = [], 0, 0
        for x in _blocks_from(pipe.file):
            lo, hi = max(start - pos, 0), min(start + frames - pos, x.shape[0])
            if hi > lo:
                out.append(x[lo:hi])
                got += hi - lo
            pos += x.shape[0]
            if got >= frames:
                break
        return np.concatenate(out) if out else np.zeros((0, pipe.file.channels), np.float32)
    finally:
        pipe.close()


def to_mono_checked(x: np.ndarray, whole: bool) -> np.ndarray:
    """Mix to mono float32, rejecting damage only the samples show: NaN/inf, and digital silence where
    `x` is the whole file (a crop of a silent stretch is the file's own content, not damage)."""
    if not np.isfinite(x).all():
        raise BadSample("nonfinite_audio")
    x = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    if whole and not np.any(x):
        raise BadSample("silent_audio")
    return np.ascontiguousarray(x, dtype=np.float32)

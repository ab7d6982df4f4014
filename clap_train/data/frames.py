"""Reading frames out of encoded audio, trusting a file's frame count only where the format makes it exact.

WAV, FLAC, AIFF and the other PCM containers state their length exactly, so a read that stops short is
damage (`truncated_audio`). MP3 and Ogg do not: libmpg123 estimates an MP3's length from its Xing/LAME
header or, without one, from the file size and the first frame's bitrate (ID3 padding and VBR make that
wrong either way), and libsndfile stops reading at that estimate. For those formats the decoded length is
the truth: a short read is the real end, a crop window is chosen from the decoded length, and an MP3 whose
without an exact header is read through a pipe, where libsndfile has no estimate to stop at.

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
FEED = 1 << 20  # bytes per write into a pipe from a file on disk

Source = bytes | str  # encoded bytes (a shard member) or a path (users' files, never read whole)

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


def _reason(e: Exception) -> str:
    # libsndfile's message starts "Error opening <_io.BytesIO object at 0x...>: ": keep only the reason
    return (getattr(e, "error_string", None) or str(e))[:120]


def open_audio(src: Source, ext: str | None = None) -> sf.SoundFile:
    """Open encoded audio (no decoding yet); a format the extension does not name is `mislabeled_audio`."""
    try:
        f = sf.SoundFile(io.BytesIO(src) if isinstance(src, bytes) else src)
    except Exception as e:  # libsndfile raises several types for unknown or damaged formats
        raise BadSample("corrupt_audio", _reason(e)) from None
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
        raise BadSample("corrupt_audio", _reason(e)) from None


def _blocks_from(f: sf.SoundFile, start: int | None = None) -> Iterator[np.ndarray]:
    try:
        if start is not None and f.seekable():
            f.seek(start)
    except Exception as e:
        raise BadSample("corrupt_audio", _reason(e)) from None
    while (x := _read(f, BLOCK)).shape[0]:
        yield x


def _id3_size(head: bytes) -> int:
    """Bytes of a leading ID3v2 tag (0 without one). The pipe starts after it: libmpg123 reading a pipe
    gives up resyncing after 1 KiB, and a tag's padding is often longer."""
    if len(head) < 10 or head[:3] != b"ID3" or any(b & 0x80 for b in head[6:10]):
        return 0
    size = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
    return 10 + size + (10 if head[5] & 0x10 else 0)  # flag 0x10: a footer follows


class _Pipe:
    """The source fed to libsndfile through an OS pipe: libsndfile cannot seek a pipe, so it has no length
    to stop at and decodes to the stream's real end. `seekable` is libsndfile's word that the header's
    count is exact after all (an MP3 with a Xing/LAME header)."""

    def __init__(self, src: Source):
        r, w = os.pipe()
        self._writer = threading.Thread(target=self._feed, args=(w, src), daemon=True)
        self._writer.start()
        try:
            self.file = sf.SoundFile(r, closefd=True)
        except Exception as e:
            os.close(r)
            self._writer.join()
            raise BadSample("corrupt_audio", _reason(e)) from None

    @staticmethod
    def _feed(w: int, src: Source) -> None:
        try:
            with os.fdopen(w, "wb") as fh:
                if isinstance(src, bytes):
                    fh.write(memoryview(src)[_id3_size(src[:10]) :])
                    return
                with open(src, "rb") as inp:
                    inp.seek(_id3_size(inp.read(10)))
                    while chunk := inp.read(FEED):
                        fh.write(chunk)
        except OSError:  # the reader stopped early (a broken pipe): nothing more is wanted
            pass

    def close(self) -> None:
        self.file.close()
        self._writer.join()


def blocks(src: Source, f: sf.SoundFile) -> Iterator[np.ndarray]:
    """Every frame from the start to the stream's real end, in blocks of [<=BLOCK, channels] float32: an
    MP3 through a pipe unless its header's count is exact (libsndfile stops at an estimate)."""
    if f.format != "MP3":
        yield from _blocks_from(f, start=0)
        return
    try:
        pipe = _Pipe(src)
    except BadSample:  # what libmpg123 cannot start on from a pipe, it may from the file
        yield from _blocks_from(f, start=0)
        return
    try:
        if pipe.file.seekable():  # the header's count is exact: the file itself reads to the end
            yield from _blocks_from(f, start=0)
            return
        it = _blocks_from(pipe.file)
        try:
            first = next(it, None)
        except BadSample:
            first = None
        if first is None:  # nothing decoded through the pipe: the file's own reading decides
            yield from _blocks_from(f, start=0)
            return
        yield first
        yield from it
    finally:
        pipe.close()


def _until(it: Iterator[np.ndarray], limit: int) -> Iterator[np.ndarray]:
    """Blocks until more than `limit` frames came (the last one crosses it): decoding stays bounded."""
    n = 0
    for x in it:
        yield x
        n += x.shape[0]
        if n > limit:
            return


def decoded_length(src: Source, f: sf.SoundFile, limit: int, keep: int = 0) -> tuple[int, np.ndarray]:
    """The frames an estimated-length file really decodes to (at most `limit` + 1: longer is too long),
    and its first `keep` frames, decoded on the way (a clip from the start needs no second decode)."""
    n, head = 0, []
    for x in _until(blocks(src, f), limit):
        if n < keep:
            head.append(x[: keep - n])
        n += x.shape[0]
    return n, np.concatenate(head) if head else np.zeros((0, f.channels), np.float32)


def read_frames(src: Source, f: sf.SoundFile, start: int, frames: int) -> np.ndarray:
    """`frames` frames from `start` ([frames, channels] float32), fewer only at the real end of an
    estimated-length file; a short read of an exact-length file is `truncated_audio`."""
    if exact_length(f) or start + frames <= f.frames:  # libsndfile seeks there
        try:
            f.seek(start)
        except Exception as e:
            raise BadSample("corrupt_audio", _reason(e)) from None
        x = _read(f, frames)
    else:  # beyond an MP3's estimate: decode up to the window (there is no seeking past the estimate)
        out, pos, got = [], 0, 0
        for x in _until(blocks(src, f), start + frames - 1):
            lo, hi = max(start - pos, 0), min(start + frames - pos, x.shape[0])
            if hi > lo:
                out.append(x[lo:hi])
                got += hi - lo
            pos += x.shape[0]
        x = np.concatenate(out) if out else np.zeros((0, f.channels), np.float32)
    if x.shape[0] == 0:
        raise BadSample("corrupt_audio", "no frames decoded")
    if exact_length(f) and x.shape[0] < frames:
        raise BadSample("truncated_audio", f"{x.shape[0]} of {frames} frames decoded")
    return x


def to_mono_checked(x: np.ndarray, whole: bool, src: Source | None = None, f: sf.SoundFile | None = None) -> np.ndarray:
    """Mix to mono float32, rejecting damage only the samples show: NaN/inf, and digital silence of the
    whole file. A silent window of a longer file is its content unless nothing in the file (`src`, `f`:
    decoded on until a sound is heard) makes a sound."""
    if not np.isfinite(x).all():
        raise BadSample("nonfinite_audio")
    x = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    if not np.any(x) and (whole or (f is not None and not any(np.any(b) for b in blocks(src, f)))):
        raise BadSample("silent_audio")
    return np.ascontiguousarray(x, dtype=np.float32)

"""Reading frames out of encoded audio, trusting a file's frame count only where the format makes it exact.

WAV, FLAC, AIFF and the other PCM containers state their length exactly: libsndfile reads them, seeking
to a crop window, and a read that stops short is damage (`truncated_audio`). MP3 and Ogg do not: an
MP3's length is an estimate (from its Xing/LAME header or, without one, from the file size and the first
frame's bitrate; ID3 padding and VBR make it wrong either way) at which libsndfile stops reading, and
libsndfile reads only the first link of a chained Ogg and drops audio from some single-link Vorbis files
(Debian's lmms samples: 40737 of 57825 frames). Those formats are decoded with ffmpeg's decoders (PyAV)
from the start to the stream's real end: the decoded length is the truth, a crop window is chosen from
it, and a file libsndfile cannot open at all (a 40 ms Opus) is still read.

Every failure raises `BadSample(reason)`; one rule serves training, check-data, make-shards and inference.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import soundfile as sf

from clap_train.data.skips import BadSample

BLOCK = 1 << 16  # frames per read while decoding to the end: memory stays bounded for any length

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


def open_audio(src: Source, ext: str | None = None):
    """Open encoded audio (no decoding yet): a SoundFile, or for an Ogg/MP3 only PyAV opens, an object with
    the same fields. A format the extension does not name is `mislabeled_audio`."""
    try:
        f = sf.SoundFile(io.BytesIO(src) if isinstance(src, bytes) else src)
    except Exception as e:  # libsndfile raises several types for unknown or damaged formats
        f = _AvFile.open(src)  # an Ogg or MP3 libsndfile refuses (a 40 ms Opus) may still decode
        if f is None:
            raise BadSample("corrupt_audio", _reason(e)) from None
    if ext in FORMATS and f.format not in FORMATS[ext]:
        f.close()
        raise BadSample("mislabeled_audio", f".{ext} member holds {f.format}")
    if f.samplerate <= 0 or (f.frames <= 0 and exact_length(f)):  # an estimate of 0 is no verdict
        f.close()
        raise BadSample("empty_audio", f"{f.channels} channels, {f.frames} frames at {f.samplerate} Hz")
    return f


def exact_length(f) -> bool:
    return f.format in EXACT_FORMATS


class _AvFile:
    """What open_audio returns for an Ogg or MP3 only PyAV opens: the same fields as a SoundFile."""

    def __init__(self, fmt: str, samplerate: int, channels: int):
        self.format, self.samplerate, self.channels, self.frames = fmt, samplerate, channels, 1

    @classmethod
    def open(cls, src: Source):
        import av

        try:
            with av.open(io.BytesIO(src) if isinstance(src, bytes) else src) as c:
                s = c.streams.audio[0]
                name = c.format.name
                if name not in ("ogg", "mp3"):
                    return None
                return cls("OGG" if name == "ogg" else "MP3", s.rate, s.channels)
        except Exception:  # not audio PyAV reads either: the caller reports libsndfile's reason
            return None

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _read(f: sf.SoundFile, frames: int) -> np.ndarray:
    try:
        return f.read(frames, dtype="float32", always_2d=True)
    except Exception as e:
        raise BadSample("corrupt_audio", _reason(e)) from None


def _sf_blocks(f: sf.SoundFile) -> Iterator[np.ndarray]:
    try:
        f.seek(0)
    except Exception as e:
        raise BadSample("corrupt_audio", _reason(e)) from None
    while (x := _read(f, BLOCK)).shape[0]:
        yield x


def ogg_links(src: Source) -> list[tuple[int, int]]:
    """Byte ranges of the logical streams of a chained Ogg (one range for the usual single stream): a
    new link starts at each beginning-of-stream page. Page headers only are read, never the audio."""
    fh = io.BytesIO(src) if isinstance(src, bytes) else open(src, "rb")  # noqa: SIM115 (closed below)
    try:
        starts, pos = [], 0
        while len(head := (fh.seek(pos), fh.read(27))[1]) == 27 and head[:4] == b"OggS":
            table = fh.read(head[26])
            if head[5] & 0x02:  # beginning of a logical stream
                starts.append(pos)
            pos += 27 + len(table) + sum(table)
        end = fh.seek(0, io.SEEK_END)
    finally:
        fh.close()
    starts = starts or [0]
    return list(zip(starts, starts[1:] + [end]))


def _av_blocks(src: Source, rate: int, channels: int, ogg: bool = False) -> Iterator[np.ndarray]:
    """ffmpeg's decoder from the start to the end (of every link of a chained Ogg, which libavformat does
    not follow itself), as packed float32 at `rate` and `channels` (what libsndfile reported, so one
    file has one shape whichever library reads it)."""
    links = ogg_links(src) if ogg else [(0, None)]
    for a, b in links:
        if len(links) == 1:
            part = src
        elif isinstance(src, bytes):
            part = src[a:b]
        else:
            with open(src, "rb") as fh:
                fh.seek(a)
                part = fh.read(b - a)
        yield from _av_link(part, rate, channels)


def _av_link(src: Source, rate: int, channels: int) -> Iterator[np.ndarray]:
    import av

    layout = {1: "mono", 2: "stereo"}.get(channels) or av.AudioLayout(channels).name
    try:
        with av.open(io.BytesIO(src) if isinstance(src, bytes) else src) as c:
            stream = c.streams.audio[0]
            rs = None  # made only when a frame is not planar float at the rate and channels wanted
            for frame in c.decode(stream):
                if (
                    rs is None
                    and frame.format.name == "fltp"
                    and frame.rate == rate
                    and len(frame.layout.channels) == channels
                ):
                    yield frame.to_ndarray().T
                    continue
                rs = rs or av.AudioResampler(format="flt", layout=layout, rate=rate)
                for out in rs.resample(frame):
                    yield out.to_ndarray().reshape(-1, channels)
            for out in rs.resample(None) if rs else ():
                yield out.to_ndarray().reshape(-1, channels)
    except BadSample:
        raise
    except Exception as e:  # PyAV's errors (damaged packets it cannot conceal, no audio stream ...)
        raise BadSample("corrupt_audio", str(e)[:120]) from None


def blocks(src: Source, f) -> Iterator[np.ndarray]:
    """Every frame from the start to the stream's real end, in blocks of [n, channels] float32."""
    if exact_length(f):
        return _sf_blocks(f)
    return _av_blocks(src, f.samplerate, f.channels, ogg=f.format == "OGG")


def _until(it: Iterator[np.ndarray], limit: int) -> Iterator[np.ndarray]:
    """Blocks until more than `limit` frames came (the last one crosses it): decoding stays bounded."""
    n = 0
    for x in it:
        yield x
        n += x.shape[0]
        if n > limit:
            return


def decoded_length(src: Source, f, limit: int, keep: int = 0) -> tuple[int, np.ndarray]:
    """The frames an estimated-length file really decodes to (at most `limit` + 1: longer is too long),
    and its first `keep` frames, decoded on the way (a clip from the start needs no second decode)."""
    n, head = 0, []
    for x in _until(blocks(src, f), limit):
        if n < keep:
            head.append(x[: keep - n])
        n += x.shape[0]
    return n, np.concatenate(head) if head else np.zeros((0, f.channels), np.float32)


def read_frames(src: Source, f, start: int, frames: int) -> np.ndarray:
    """`frames` frames from `start` ([frames, channels] float32), fewer only at the real end of an
    estimated-length file (decoded from its start: the window and the length come from one decoder);
    a short read of an exact-length file is `truncated_audio`."""
    if exact_length(f):
        try:
            f.seek(start)
        except Exception as e:
            raise BadSample("corrupt_audio", _reason(e)) from None
        x = _read(f, frames)
    else:
        out, pos = [], 0
        for x in _until(blocks(src, f), start + frames - 1):
            lo, hi = max(start - pos, 0), min(start + frames - pos, x.shape[0])
            if hi > lo:
                out.append(x[lo:hi])
            pos += x.shape[0]
        x = np.concatenate(out) if out else np.zeros((0, f.channels), np.float32)
    if x.shape[0] == 0:
        raise BadSample("corrupt_audio", "no frames decoded")
    if exact_length(f) and x.shape[0] < frames:
        raise BadSample("truncated_audio", f"{x.shape[0]} of {frames} frames decoded")
    return x


def to_mono_checked(x: np.ndarray, whole: bool, src: Source | None = None, f=None) -> np.ndarray:
    """Mix to mono float32, rejecting damage only the samples show: NaN/inf, and digital silence of the
    whole file. A silent window of a longer file is its content unless nothing in the file (`src`, `f`:
    decoded on until a sound is heard) makes a sound."""
    if not np.isfinite(x).all():
        raise BadSample("nonfinite_audio")
    x = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    if not np.any(x) and (whole or (f is not None and not any(np.any(b) for b in blocks(src, f)))):
        raise BadSample("silent_audio")
    return np.ascontiguousarray(x, dtype=np.float32)

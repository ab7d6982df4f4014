"""Late decoding of raw sample bytes: audio (soundfile, soxr) and captions (JSON or text).

Every failure raises `BadSample(reason)`; the stream counts it and moves on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import soxr

from clap_train.config import check_choice, check_number
from clap_train.data.crop import CROPS, PADS, choose_window, fit_length
from clap_train.data.frames import Source, decoded_length, exact_length, open_audio, read_frames, to_mono_checked
from clap_train.data.skips import BadSample
from clap_train.data.tar_reader import AUDIO_EXTS

# int16 halves the bytes every batch costs in workers' shared memory and pinned buffers; it is the
# quantisation LAION's loader applies to every clip (float -> int16 -> float), converted back on the device
TRANSPORTS = ("int16", "float32")


@dataclass
class AudioSpec:
    sample_rate: int = 48000  # the model's rate; files at other rates are resampled
    clip_seconds: float = 10.0  # the crop length the model sees
    train_crop: str = "rand_trunc"  # rand_trunc | start | center
    eval_crop: str = "start"  # deterministic crop at evaluation
    pad: str = "repeatpad"  # repeatpad | repeat | pad
    max_seconds: float = 3600.0  # longer files are skipped before decoding (bounded memory)
    max_channels: int = 8  # up to 7.1 is mixed down to mono; more is a damaged header or not audio
    fusion: bool = False  # keep clips longer than clip_seconds whole (fusion models) ...
    fusion_max_seconds: float = 60.0  # ... up to this many seconds (a crop window beyond that)
    transport: str = "int16"  # int16 | float32: how clips travel from workers to the device

    def __post_init__(self):
        k = "data.audio."
        check_number(k + "sample_rate", self.sample_rate, int, 1000, 384000)
        check_number(k + "clip_seconds", self.clip_seconds, float, 0, 3600, low_open=True)
        check_choice(k + "train_crop", self.train_crop, CROPS)
        check_choice(k + "eval_crop", self.eval_crop, CROPS)
        check_choice(k + "pad", self.pad, PADS)
        check_number(k + "max_seconds", self.max_seconds, float, 0, low_open=True)
        check_number(k + "max_channels", self.max_channels, int, 1)
        check_number(k + "fusion_max_seconds", self.fusion_max_seconds, float, self.clip_seconds)
        check_choice(k + "transport", self.transport, TRANSPORTS)

    @property
    def clip_samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))


def find_audio(sample: dict) -> tuple[str, bytes]:
    for ext in sample:
        if ext in AUDIO_EXTS:
            return ext, sample[ext]
    raise BadSample("missing_audio")


@dataclass
class Clip:
    samples: np.ndarray  # mono float32 at the file's rate
    sample_rate: int
    frames: int | None  # the file's true length (decoded where the format only estimates it); None: not counted
    channels: int
    format: str  # libsndfile's container name (WAV, FLAC, MP3, OGG ...)


def read_clip(
    src: Source,
    spec: AudioSpec,
    seconds: float | None,
    crop: str,
    rng: np.random.Generator | None,
    ext: str | None = None,
    count: bool = True,
) -> Clip:
    """Decode a `seconds`-long crop window (the whole file with None) of encoded bytes or a file, seeking
    rather than decoding what lies before it, after the checks that need no decoding (format, channels,
    length). Without `count` a start crop of an estimated-length file decodes that window only (its
    length stays unknown: `frames` None)."""
    with open_audio(src, ext) as f:
        sr, ch, fmt, exact = f.samplerate, f.channels, f.format, exact_length(f)
        if ch > spec.max_channels:
            raise BadSample("too_many_channels", f"{ch} channels")
        limit = int(spec.max_seconds * sr)
        window = None if seconds is None else int(np.ceil(seconds * sr))
        if not exact and not count and window is not None and crop == "start":
            return Clip(to_mono_checked(read_frames(src, f, 0, window), False, src, f), sr, None, ch, fmt)
        n, head = (f.frames, None) if exact else decoded_length(src, f, limit, keep=window or limit + 1)
        if n > limit:
            raise BadSample("too_long", f"{n / sr:.1f} s > max_seconds={spec.max_seconds:g}")
        window = n if window is None else min(window, n)
        start = choose_window(n, window, crop, rng)
        if head is not None and start + window <= head.shape[0]:
            x = head[start : start + window]
        else:
            x = read_frames(src, f, start, window)
        return Clip(to_mono_checked(x, window == n, src, f), sr, n, ch, fmt)


def decode_audio(data: bytes, spec: AudioSpec, crop: str, rng: np.random.Generator | None, ext: str | None = None):
    """Decode only the crop window, mix to mono, resample, pad.

    Returns (waveform float32 [clip_samples], true length in model samples before padding, longer flag);
    with `spec.fusion` a longer clip comes back whole (up to fusion_max_seconds), not cropped.
    """
    window_s = spec.fusion_max_seconds if spec.fusion else spec.clip_seconds
    clip = read_clip(data, spec, window_s, crop, rng, ext)
    x, sr, n = clip.samples, clip.sample_rate, clip.frames
    if sr != spec.sample_rate:
        x = soxr.resample(x, sr, spec.sample_rate).astype(np.float32, copy=False)
    if spec.fusion and x.shape[0] > spec.clip_samples:  # the model builds its global view + local crops
        return x, x.shape[0], True
    true_len = min(x.shape[0], spec.clip_samples)
    longer = n / sr > spec.clip_seconds
    return fit_length(x, spec.clip_samples, spec.pad), true_len, longer


def decode_captions(
    sample: dict, caption_key: str | list[str] = "text", tag_key: str = "tag", tag_templates: list[str] | None = None
) -> tuple[list[str], list[str]]:
    """Captions (all of them) and tags from the JSON member (or a .txt member).

    `caption_key` may be a list (e.g. `[text, text_augment_t5]`): the captions under all of those keys
    are pooled, so training chooses among original and augmented captions.
    """
    keys = [caption_key] if isinstance(caption_key, str) else list(caption_key)
    meta: dict = {}
    if "json" in sample:
        try:
            meta = json.loads(sample["json"].decode("utf-8"))
        except UnicodeDecodeError:
            raise BadSample("json_not_utf8") from None
        except ValueError:
            raise BadSample("json_invalid") from None
        if not isinstance(meta, dict):
            raise BadSample("json_invalid", "not an object")
    elif "txt" in sample:
        try:
            meta = {keys[0]: sample["txt"].decode("utf-8")}
        except UnicodeDecodeError:
            raise BadSample("caption_not_utf8") from None
    tags = meta.get(tag_key) or []
    tags = [t for t in (tags if isinstance(tags, list) else [tags]) if isinstance(t, str) and t.strip()]
    present = [meta[k] for k in keys if meta.get(k) is not None]
    if not present:
        if tags and tag_templates:
            return [t.format(", ".join(tags)) for t in tag_templates], tags
        raise BadSample("missing_caption")
    raw = [c for r in present for c in (r if isinstance(r, list) else [r])]
    caps = [c.strip() for c in raw if isinstance(c, str) and c.strip()]
    if not caps:
        raise BadSample("empty_caption")
    return caps, tags

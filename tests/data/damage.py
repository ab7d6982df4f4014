"""Builders of damaged samples and shards, one per kind of damage the pipeline must survive."""

import io
import tarfile

import numpy as np
import soundfile as sf

from clap_train.data.writer import encode_flac, encode_json
from tests.data.mp3 import misestimated_mp3

SR = 16000


def tone(seconds=0.3, sr=SR, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) + 0.01 * rng.standard_normal(len(t))).astype(
        np.float32
    )


def wav_bytes(x, sr=SR, subtype="PCM_16"):
    b = io.BytesIO()
    sf.write(b, x, sr, format="WAV", subtype=subtype)
    return b.getvalue()


def ogg_bytes(x, sr, subtype):
    b = io.BytesIO()
    sf.write(b, x, sr, format="OGG", subtype=subtype)
    return b.getvalue()


def good(i):
    return {"flac": encode_flac(tone(seed=i), SR), "json": encode_json({"text": [f"good clip {i}"]})}


CAP = encode_json({"text": "a caption"})

# (reason it must be counted under, members of the damaged sample); None = usable (resampled, not skipped)
DAMAGES = [
    ("corrupt_audio", {"flac": b"\x00garbage" * 50, "json": CAP}),
    ("corrupt_audio", {"flac": encode_flac(tone(2.0), SR)[:6000], "json": CAP}),  # truncated: decoder loses sync
    ("mislabeled_audio", {"flac": wav_bytes(tone()), "json": CAP}),
    ("empty_audio", {"wav": wav_bytes(np.zeros(0, np.float32)), "json": CAP}),
    ("silent_audio", {"flac": encode_flac(np.zeros(4000, np.float32), SR), "json": CAP}),
    ("nonfinite_audio", {"wav": wav_bytes(np.array([0.1, np.nan] * 2000, np.float32), subtype="FLOAT"), "json": CAP}),
    ("too_long", {"flac": encode_flac(np.tile(tone(1.0), 5), SR), "json": CAP}),
    ("too_many_channels", {"wav": wav_bytes(np.stack([tone()] * 10, 1)), "json": CAP}),
    ("missing_audio", {"json": CAP}),
    ("missing_caption", {"flac": encode_flac(tone(), SR), "json": encode_json({"tag": []})}),
    ("empty_caption", {"flac": encode_flac(tone(), SR), "json": encode_json({"text": ["", 3]})}),
    ("json_invalid", {"flac": encode_flac(tone(), SR), "json": b"{not json"}),
    ("json_not_utf8", {"flac": encode_flac(tone(), SR), "json": b'{"text": "caf\xe9"}'}),
    (None, {"flac": encode_flac(tone(0.3, 44100), 44100), "json": CAP}),  # other rate: resampled
    # MP3s whose length libmpg123 only estimates (7.3 s, 0.65 s, 0.79 s for 2.05 s decoded): whole and usable
    *((None, {"mp3": misestimated_mp3(kind, 2.0, 32000)[0], "json": CAP}) for kind in ("over", "under", "cbr")),
    (None, {"opus": ogg_bytes(tone(1.0, 48000), 48000, "OPUS"), "json": CAP}),
]


def write_tar(path, samples, truncate_at=None):
    """samples: list of (key, {ext: bytes}). Written in order; optionally cut at a byte offset."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in samples:
            for ext, data in members.items():
                ti = tarfile.TarInfo(f"{key}.{ext}")
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
    data = buf.getvalue()
    with open(path, "wb") as f:
        f.write(data if truncate_at is None else data[:truncate_at])
    return data

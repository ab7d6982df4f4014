"""Writing webdataset shards in the LAION-Audio-630K layout, byte-for-byte reproducibly.

`NNNNNN.tar` files holding `<key>.flac` (or another codec's member) + `<key>.json`, and a `sizes.json`
(shard name -> sample count) beside them. Tar headers carry no time, user or group, so the same input gives
identical bytes.
"""

from __future__ import annotations

import io
import json
import os
import tarfile

import numpy as np
import soundfile as sf

from clap_train.atomic import atomic_path, write_atomic

# codec -> (member extension, libsndfile container, subtype). FLAC is LAION's; 16-bit WAV decodes cheaper
# for more bytes, the lossy three are smaller (docs/PERFORMANCE.md, "Data feed", has the figures).
CODECS = {
    "flac": ("flac", "FLAC", "PCM_16"),
    "pcm16": ("wav", "WAV", "PCM_16"),
    "vorbis": ("ogg", "OGG", "VORBIS"),
    "opus": ("opus", "OGG", "OPUS"),
    "mp3": ("mp3", "MP3", "MPEG_LAYER_III"),
}
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)  # the only rates Opus encodes


def check_codec(codec: str, sample_rate: int) -> None:
    if codec not in CODECS:
        raise ValueError(f"codec {codec!r}: valid choices are {', '.join(CODECS)}")
    if codec == "opus" and sample_rate not in OPUS_RATES:
        raise ValueError(f"codec opus cannot store {sample_rate} Hz; valid rates: {OPUS_RATES}")


def encode_audio(wav: np.ndarray, sample_rate: int, codec: str = "flac") -> tuple[str, bytes]:
    """float waveform [T] or [T, C] in [-1, 1] (or int16 PCM) -> (member extension, encoded bytes)."""
    check_codec(codec, sample_rate)
    ext, container, subtype = CODECS[codec]
    buf = io.BytesIO()
    data = wav if wav.dtype == np.int16 else np.clip(wav, -1.0, 1.0)
    sf.write(buf, data, sample_rate, format=container, subtype=subtype)
    return ext, buf.getvalue()


def encode_flac(wav: np.ndarray, sample_rate: int) -> bytes:
    """float waveform [T] or [T, C] in [-1, 1] -> 16-bit FLAC bytes."""
    return encode_audio(wav, sample_rate, "flac")[1]


def encode_json(meta: dict) -> bytes:
    return json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8")


def add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    """A member whose header holds no time, owner or group: the same bytes give the same tar."""
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname = len(data), 0, 0o644, 0, 0, "", ""
    tar.addfile(ti, io.BytesIO(data))


class ShardWriter:
    """Sequential shard writer: `write(key, {"flac": bytes, "json": bytes})`, rolling over every `maxcount`."""

    def __init__(self, out_dir: str, maxcount: int = 512, start: int = 0):
        self.out_dir, self.maxcount, self.index = out_dir, maxcount, start
        os.makedirs(out_dir, exist_ok=True)
        self.sizes: dict[str, int] = {}
        self._tar: tarfile.TarFile | None = None
        self._name = ""
        self._count = 0

    def _roll(self):
        self._close_shard()
        self._name = f"{self.index:06d}.tar"
        self.index += 1
        self._commit = atomic_path(os.path.join(self.out_dir, self._name))  # a shard appears whole or not at all
        # closed by _close_shard, which commits the shard: it spans write() calls, so no `with` block
        self._tar = tarfile.open(self._commit.__enter__(), "w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115
        self._count = 0

    def _close_shard(self):
        if self._tar is not None:
            self._tar.close()
            self._commit.__exit__(None, None, None)
            self.sizes[self._name] = self._count
            self._tar = None

    def write(self, key: str, members: dict[str, bytes]) -> None:
        if "/" in key or key.startswith(".") or "." in key:
            raise ValueError(f"invalid sample key {key!r}: no dots or slashes")
        if self._tar is None or self._count >= self.maxcount:
            self._roll()
        for ext, data in members.items():
            add_member(self._tar, f"{key}.{ext}", data)
        self._count += 1

    def close(self) -> dict[str, int]:
        self._close_shard()
        write_atomic(os.path.join(self.out_dir, "sizes.json"), json.dumps(self.sizes, indent=1, sort_keys=True))
        return self.sizes

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

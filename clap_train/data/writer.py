"""Writing webdataset shards in the LAION-Audio-630K layout, byte-for-byte reproducibly.

`NNNNNN.tar` files holding `<key>.flac` + `<key>.json`, and a `sizes.json` (shard name -> sample count)
beside them. Tar headers carry no time, user or group, so the same input gives identical bytes.
"""

from __future__ import annotations

import io
import json
import os
import tarfile

import numpy as np
import soundfile as sf


def encode_flac(wav: np.ndarray, sample_rate: int) -> bytes:
    """float waveform [T] or [T, C] in [-1, 1] -> 16-bit FLAC bytes."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(wav, -1.0, 1.0), sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def encode_json(meta: dict) -> bytes:
    return json.dumps(meta, ensure_ascii=False, sort_keys=True).encode("utf-8")


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
        self._tar = tarfile.open(os.path.join(self.out_dir, self._name + ".tmp"), "w", format=tarfile.USTAR_FORMAT)
        self._count = 0

    def _close_shard(self):
        if self._tar is not None:
            self._tar.close()
            path = os.path.join(self.out_dir, self._name)
            os.replace(path + ".tmp", path)  # a shard appears whole or not at all
            self.sizes[self._name] = self._count
            self._tar = None

    def write(self, key: str, members: dict[str, bytes]) -> None:
        if "/" in key or key.startswith(".") or "." in key:
            raise ValueError(f"invalid sample key {key!r}: no dots or slashes")
        if self._tar is None or self._count >= self.maxcount:
            self._roll()
        for ext, data in members.items():
            ti = tarfile.TarInfo(f"{key}.{ext}")
            ti.size, ti.mtime, ti.mode, ti.uid, ti.gid, ti.uname, ti.gname = len(data), 0, 0o644, 0, 0, "", ""
            self._tar.addfile(ti, io.BytesIO(data))
        self._count += 1

    def close(self) -> dict[str, int]:
        self._close_shard()
        with open(os.path.join(self.out_dir, "sizes.json"), "w") as f:
            json.dump(self.sizes, f, indent=1, sort_keys=True)
        return self.sizes

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

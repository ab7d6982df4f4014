"""MP3s whose frame count libmpg123 can only estimate, as old encoders and stream rips leave them.

LAME puts a Xing/Info frame first that states the exact length; without it libmpg123 estimates the
length from the file size and the first frame's bitrate. A VBR file that starts quiet (low bitrate)
is estimated far too long; one that starts loud is estimated too short, and libsndfile then stops
reading at the estimate. ID3v2 padding in front inflates the size-based estimate further.
"""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

_KBPS = [0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320]  # MPEG-1 layer III
_RATES = [44100, 48000, 32000]


def encode_mp3(x: np.ndarray, sr: int, vbr: bool = True) -> bytes:
    b = io.BytesIO()
    sf.write(b, x, sr, format="MP3", bitrate_mode="VARIABLE" if vbr else "CONSTANT")
    return b.getvalue()


def strip_xing(data: bytes) -> bytes:
    """Drop the leading Xing/Info frame (MPEG-1 layer III, no ID3 in front)."""
    h = data[:4]
    assert h[0] == 0xFF and (h[1] & 0xFE) == 0xFA, "not an MPEG-1 layer III frame"
    size = 144 * _KBPS[h[2] >> 4] * 1000 // _RATES[(h[2] >> 2) & 3] + ((h[2] >> 1) & 1)
    assert b"Xing" in data[:size] or b"Info" in data[:size], "no Xing/Info frame to drop"
    return data[size:]


def id3_padding(size: int = 16383) -> bytes:
    """An ID3v2.3 tag that holds only padding (`size` < 2**21 bytes)."""
    return b"ID3\x03\x00\x00" + bytes([0, 0, size >> 7, size & 127]) + bytes(size)


def misestimated_mp3(kind: str, seconds: float = 5.0, sr: int = 44100, seed: int = 0) -> tuple[bytes, int]:
    """(mp3 bytes, frames of audio encoded): kind "over" is estimated too long (silence,
    then noise, behind ID3 padding), "under" too short (noise, then silence), "cbr" a few frames
    off (constant bitrate noise, estimated from the size without its Info frame).
    The quiet part is digital silence (the fewest bits per frame), the loud part noise (the most)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    quiet = np.zeros(n * 2 // 5, np.float32)
    loud = (0.5 * rng.standard_normal(n - quiet.shape[0])).astype(np.float32)
    if kind == "cbr":
        return strip_xing(encode_mp3((0.5 * rng.standard_normal(n)).astype(np.float32), sr, vbr=False)), n
    x = np.concatenate([quiet, loud] if kind == "over" else [loud, quiet])
    data = strip_xing(encode_mp3(x, sr))
    return (id3_padding() + data if kind == "over" else data), n

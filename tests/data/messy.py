"""A real-world messy folder of audio: classes as sub-folders, mixed formats, rates and channel counts,
very short and long clips, unreadable files, caption side-cars and non-audio files."""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf

from clap_train.data.synthetic import make_clip
from tests.data.mp3 import misestimated_mp3

CLASSES = ("bell", "whistle", "buzzer", "drum")
# (extension, soundfile format, subtype, sample rate, channels)
FORMATS = [
    ("wav", "WAV", "PCM_16", 16000, 2),
    ("flac", "FLAC", "PCM_24", 44100, 1),
    ("ogg", "OGG", "VORBIS", 22050, 1),
    ("mp3", "MP3", None, 32000, 2),
    ("aiff", "AIFF", "PCM_16", 8000, 3),
    ("wav", "WAV", "FLOAT", 48000, 1),
]
# what the folder holds besides the good clips, and the skip reason each must get
BAD = {
    "bell/broken.wav": "corrupt_audio",
    "bell/empty.flac": "empty_file",
    "whistle/blip.wav": "too_short",
    "whistle/silence.wav": "silent_audio",
}


def write_messy_folder(root: str, per_class: int = 6, seed: int = 0) -> dict:
    """Returns {"good": [relative paths], "bad": {path: reason}, "ignored": [...], "long": path}."""
    rng = np.random.default_rng(seed)
    good = []
    for ci, cls in enumerate(CLASSES):
        os.makedirs(os.path.join(root, cls), exist_ok=True)
        for j in range(per_class):
            ext, fmt, sub, sr, ch = FORMATS[(ci + j) % len(FORMATS)]
            x = make_clip(
                cls, ("low", "medium", "high")[j % 3], ("once", "twice", "three times")[j % 3], "loud", sr, rng
            )
            if sub == "FLOAT":
                x = x * 2.0  # above full scale: must be rescaled, not clipped
            wav = np.stack([x * (0.9**k) for k in range(ch)], axis=1) if ch > 1 else x
            rel = f"{cls}/clip_{j:02d}.{ext}"
            sf.write(os.path.join(root, rel), wav, sr, format=fmt, subtype=sub)
            good.append(rel)
    # a long clip (25 s) with its own captions in a side-car file
    long_rel = "drum/long_take.flac"
    sf.write(
        os.path.join(root, long_rel),
        np.tile(make_clip("drum", "low", "once", "loud", 16000, rng), 12)[:400000],
        16000,
        format="FLAC",
    )
    with open(os.path.join(root, "drum/long_take.txt"), "w") as f:
        f.write("A low drum is struck again and again.\nDrum hits repeat for a long time.\n")
    good.append(long_rel)
    # MP3s whose headers misstate their length (estimated 13.3 s and 1.3 s for 5 s): used whole
    for rel, kind in (("buzzer/tagged_rip.mp3", "over"), ("whistle/old_encoder.mp3", "under")):
        with open(os.path.join(root, rel), "wb") as f:
            f.write(misestimated_mp3(kind, seconds=5.0, sr=44100, seed=len(good))[0])
        good.append(rel)
    with open(os.path.join(root, "bell/broken.wav"), "wb") as f:
        f.write(b"RIFF\x00\x00\x00\x00WAVEfmt " + rng.bytes(64))
    open(os.path.join(root, "bell/empty.flac"), "wb").close()
    sf.write(os.path.join(root, "whistle/blip.wav"), np.full(300, 0.3, np.float32), 16000)
    sf.write(os.path.join(root, "whistle/silence.wav"), np.zeros(16000, np.float32), 16000)
    with open(os.path.join(root, "notes.txt"), "w") as f:
        f.write("recorded in the garden\n")
    with open(os.path.join(root, "buzzer/cover.jpg"), "wb") as f:
        f.write(rng.bytes(100))
    return {"good": sorted(good), "bad": dict(BAD), "ignored": ["buzzer/cover.jpg", "notes.txt"], "long": long_rel}

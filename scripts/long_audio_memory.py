"""Peak memory of embedding one long file, per `--long-audio` mode, against what decoding it whole holds.

    python scripts/long_audio_memory.py                 # a 60-minute 44.1 kHz stereo FLAC, written here
    python scripts/long_audio_memory.py --audio podcast.mp3 --checkpoint mine.ckpt

Each mode runs in its own process (peak RSS is per process): the model is loaded and warmed up on one
clip first, so the figure is what the long file itself adds. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def write_long_file(path: str, minutes: float, sr: int = 44100, channels: int = 2) -> None:
    """Tones that change every few seconds plus noise, written a minute at a time (bounded memory)."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    with sf.SoundFile(path, "w", sr, channels, format="FLAC", subtype="PCM_16") as f:
        for m in range(int(np.ceil(minutes))):
            n = int(min(60.0, (minutes - m) * 60) * sr)
            t = np.arange(n) / sr
            freq = 200 + 1800 * ((np.floor(t / 3.7) * 0.37 + m * 0.11) % 1.0)
            x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(n)
            f.write(np.stack([x * 0.8**c for c in range(channels)], 1).astype(np.float32))


def small_checkpoint(folder: str) -> str:
    """The small HTS-AT + RoBERTa of the tests at the real geometry (48 kHz, 10 s clips), random weights."""
    import torch

    from clap_train.checkpoints.export import save_ours
    from clap_train.model import build_model
    from clap_train.testing import SMALL_HTSAT, clap_cfg
    from clap_train.text.offline import make_roberta_dir

    torch.manual_seed(0)
    path = os.path.join(folder, "small.ckpt")
    save_ours(build_model(clap_cfg(make_roberta_dir(os.path.join(folder, "roberta")), SMALL_HTSAT, 32)), path)
    return path


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(checkpoint: str, audio: str, mode: str, hop: str) -> dict:
    import soundfile as sf

    from clap_train import load_model
    from clap_train.data.audio_files import list_audio
    from clap_train.inference import embed_items
    from clap_train.long_audio import LongAudio

    model = load_model(checkpoint)
    model.encode_audio([np.full(model.clip_samples, 0.1, np.float32)] * 16)  # warm-up at the batch size used
    before = rss_mb()
    t0 = time.perf_counter()
    got = embed_items(model, list_audio(audio).items, long_audio=LongAudio(mode, hop_seconds=float(hop) or None))
    wall = time.perf_counter() - t0
    if got.skipped:
        raise SystemExit(f"{audio}: {got.skipped}")
    seconds = sf.info(audio).duration
    return {
        "mode": mode,
        "hop_seconds": float(hop) or model.clip_seconds / 2,
        "rss_before_mb": round(before, 1),
        "rss_peak_mb": round(rss_mb(), 1),
        "added_mb": round(rss_mb() - before, 1),
        "seconds_embedded_s": round(wall, 1),
        "file_seconds": round(seconds, 1),
        "whole_decode_mb": round(seconds * model.sample_rate * 4 / 2**20, 1),  # mono float32 at the model rate
        "embedding_head": [round(float(v), 5) for v in got.emb[0, :4]],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--audio", help="the long file (default: a generated one)")
    ap.add_argument("--minutes", type=float, default=60.0, help="length of the generated file")
    ap.add_argument("--rate", type=int, default=44100, help="sample rate of the generated file")
    ap.add_argument("--channels", type=int, default=2, help="channels of the generated file")
    ap.add_argument("--hop-seconds", type=float, default=0.0, help="slide: window step (0: half a window)")
    ap.add_argument("--checkpoint", help="default: a small random HTS-AT at 48 kHz / 10 s")
    ap.add_argument("--modes", default="first,slide", help="comma-separated --long-audio modes")
    ap.add_argument("--child", nargs=4, metavar=("CKPT", "AUDIO", "MODE", "HOP"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        audio = args.audio
        if audio is None:
            audio = os.path.join(tmp, "long.flac")
            write_long_file(audio, args.minutes, args.rate, args.channels)
        ckpt = args.checkpoint or small_checkpoint(tmp)
        runs = []
        for mode in args.modes.split(","):
            p = subprocess.run(
                [sys.executable, __file__, "--child", ckpt, audio, mode, str(args.hop_seconds)],
                capture_output=True,
                text=True,
                check=False,
            )
            if p.returncode:
                sys.stderr.write(p.stderr)
                return p.returncode
            runs.append(json.loads(p.stdout.strip().splitlines()[-1]))
    print(json.dumps({"file_bytes_note": "a file on disk is never read whole", "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

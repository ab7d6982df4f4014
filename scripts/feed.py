"""The data feed a GPU needs: what each codec costs to decode, our loader's rate per worker, cores per GPU.

    python scripts/feed.py --audio-dir DIR --out feed.json   # real recordings (any format), cut into clips
    python scripts/feed.py --quick --out feed.json           # CI size: synthetic clips, checks that it runs

The same mono 48 kHz clips are encoded as FLAC, 16-bit WAV, Ogg Vorbis, Opus and MP3 (libsndfile), then
measured on one thread, a loader worker's share of a core:
  decode   clips/s through the worker's decoder (decode.decode_audio: open, checks, read, mono) for whole
           10 s clips, and for a 10 s crop of a 25 s file (LAION-Audio-630K's mean clip is 24.6 s:
           4325 h / 633,526 clips), where a codec's seeking matters
  loader   samples/s of our training stream (tar read, decode, crop, tokenise, collate) over shards of it
  bytes    per 10 s clip, and what a node of 8 GPUs reads per second at LAION's mean clip length
The GPU's appetite is the FLOPs of one HTS-AT-tiny + RoBERTa-base training sample (counted here with
torch's FLOP counter) at assumed MFUs (--mfu) of an H200's bf16 peak, or a measured rate
(--gpu-samples-per-s, from scripts/gpu_check.py). Cores per GPU = appetite / loader rate per worker.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench  # noqa: E402  (the step's model and the training stream, as bench.py measures them)

from clap_train.data.decode import AudioSpec, decode_audio  # noqa: E402
from clap_train.data.writer import CODECS, ShardWriter, encode_audio, encode_json  # noqa: E402

SR, CLIP = 48000, 10.0
LAION_MEAN_SECONDS = 4325.39 * 3600 / 633526  # LAION-CLAP paper, table 1: hours / pairs
H200_BF16 = 989e12  # dense bf16 tensor-core peak of an H100/H200 SXM, NVIDIA's data sheet (no sparsity)


def real_clips(folder: str, n: int, seconds: float) -> list[np.ndarray]:
    """Non-overlapping `seconds` windows of the recordings under `folder`: mono, 48 kHz, skipping quiet ones."""
    import soundfile as sf
    import soxr

    paths = sorted(
        os.path.join(d, f)
        for d, _, fs in os.walk(folder)
        for f in fs
        if f.lower().rsplit(".", 1)[-1] in ("flac", "wav", "ogg", "oga", "mp3", "opus", "aiff")
    )
    clips, win = [], int(seconds * SR)
    for p in paths:
        x, sr = sf.read(p, dtype="float32", always_2d=True)
        x = soxr.resample(x.mean(axis=1), sr, SR).astype(np.float32) if sr != SR else x.mean(axis=1)
        for s in range(0, len(x) - win + 1, win):
            c = x[s : s + win]
            if np.sqrt(np.mean(c**2)) > 0.01:
                clips.append(np.clip(c, -1, 1))
        if len(clips) >= n:
            break
    if not clips:
        raise SystemExit(f"--audio-dir {folder}: no audio of at least {seconds} s found")
    return clips[:n]


def synthetic_clips(n: int, seconds: float) -> list[np.ndarray]:
    """Music-like stand-ins (notes with harmonics and decays over noise): compress like sound, not like tones."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    out = []
    for _ in range(n):
        x = 0.02 * rng.standard_normal(t.size)
        for onset in np.sort(rng.uniform(0, seconds, 12)):
            f0, env = rng.uniform(80, 1000), np.where(t >= onset, np.exp(-(t - onset) * rng.uniform(2, 8)), 0)
            x += env * sum(0.2 / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6)) for k in range(1, 6))
        out.append((x / np.abs(x).max() * 0.8).astype(np.float32))
    return out


def decode_rate(members: list[bytes], ext: str, reps: int) -> float:
    """Clips/s on one thread: the median of `reps` passes over every member after a warm-up pass."""
    spec, rng = AudioSpec(sample_rate=SR, clip_seconds=CLIP), np.random.default_rng(0)
    times = []
    for r in range(reps + 1):
        t0 = time.perf_counter()
        for m in members:
            decode_audio(m, spec, "rand_trunc", rng, ext)
        if r:
            times.append(time.perf_counter() - t0)
    return len(members) / statistics.median(times)


def loader_rate(members: list[bytes], ext: str, d: str, batch: int, steps: int) -> float:
    """Samples/s of our training stream (one worker's work) over shards holding `members`."""
    with ShardWriter(d, maxcount=max(1, len(members) // 4)) as w:
        for i, m in enumerate(members):
            w.write(f"{i:06d}", {ext: m, "json": encode_json({"text": [f"a recording, number {i}, of some sounds"]})})
    shards = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".tar"))
    it = iter(bench._train_stream(shards, batch, steps + 1, SR, CLIP))
    next(it)  # opening shards, the first buffer fill
    t0 = time.perf_counter()
    for _ in range(steps):
        next(it)
    return batch * steps / (time.perf_counter() - t0)


def step_flops_per_sample(layers: int) -> float:
    """Model FLOPs of one training sample (forward + backward) of HTS-AT-tiny + RoBERTa (`layers` layers)."""
    from clap_train.lit import ClapLit

    B = 2
    with tempfile.TemporaryDirectory() as d:
        torch.manual_seed(0)
        lit = ClapLit(bench.step_model_cfg(d, layers), optim={"warmup_steps": 1, "total_steps": 10})
        tok = lit.model.tokenizer(["a dog barks twice while rain falls on a tin roof nearby"] * B)
        batch = {
            "audio": torch.randn(B, int(CLIP * SR)) * 0.1,
            "audio_len": torch.full((B,), int(CLIP * SR)),
            "text": tok,
        }
        a = argparse.Namespace(device="cpu", bf16=False)
        return bench._flops(lambda: bench._ours_loss(lit, batch, a).backward()) / B


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--audio-dir", help="real recordings to cut clips from (default: synthetic music-like clips)")
    ap.add_argument("--clips", type=int, default=None, help="10 s clips per codec (default 48; quick 8)")
    ap.add_argument("--reps", type=int, default=None, help="timed passes per codec (default 3; quick 1)")
    ap.add_argument("--mfu", default="0.1,0.3", help="assumed model FLOPs utilisations of the GPU (comma-separated)")
    ap.add_argument(
        "--gpu-samples-per-s",
        type=float,
        default=None,
        help="a measured per-GPU training rate (scripts/gpu_check.py) instead of the FLOP estimate",
    )
    ap.add_argument("--quick", action="store_true", help="CI size: figures mean nothing")
    ap.add_argument("--out", default="feed.json")
    a = ap.parse_args(argv)
    n, reps = a.clips or (8 if a.quick else 48), a.reps or (1 if a.quick else 3)
    torch.set_num_threads(1)  # a loader worker's share
    print(
        f"{n} clips of {CLIP:.0f} s at {SR} Hz, mono, from {a.audio_dir or 'synthetic music-like audio'}; one thread",
        flush=True,
    )
    clips = real_clips(a.audio_dir, n, CLIP) if a.audio_dir else synthetic_clips(n, CLIP)
    long = real_clips(a.audio_dir, max(2, n // 4), 25.0) if a.audio_dir else synthetic_clips(max(2, n // 4), 25.0)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for codec, (ext, _, _) in CODECS.items():
            members = [encode_audio(c, SR, codec)[1] for c in clips]
            long_members = [encode_audio(c, SR, codec)[1] for c in long]
            rows[codec] = {
                "ext": ext,
                "kb_per_10s": statistics.mean(map(len, members)) / 1e3,
                "decode_clips_per_s": decode_rate(members, ext, reps),
                "crop_of_25s_clips_per_s": decode_rate(long_members, ext, reps),
                "loader_samples_per_s": loader_rate(
                    members, ext, os.path.join(tmp, codec), batch=8, steps=max(2, 2 * n // 8)
                ),
            }
            r = rows[codec]
            print(
                f"  {codec:7s} {r['kb_per_10s']:7.1f} kB/10 s  decode {r['decode_clips_per_s']:6.1f} clips/s  "
                f"crop of 25 s {r['crop_of_25s_clips_per_s']:6.1f}  loader {r['loader_samples_per_s']:6.1f} "
                "samples/s",
                flush=True,
            )
    layers = 2 if a.quick else 12
    flops = step_flops_per_sample(layers)
    appetite = (
        {"measured": a.gpu_samples_per_s}
        if a.gpu_samples_per_s
        else {f"H200 at MFU {m}": float(m) * H200_BF16 / flops for m in a.mfu.split(",")}
    )
    print(
        f"training sample (HTS-AT-tiny + RoBERTa, {layers} text layers): {flops / 1e9:.1f} GFLOP; per GPU: "
        + ", ".join(f"{k} {v:.0f} samples/s" for k, v in appetite.items()),
        flush=True,
    )
    for r in rows.values():
        r["cores_per_gpu"] = {k: v / r["loader_samples_per_s"] for k, v in appetite.items()}
        r["node_mb_per_s"] = {k: 8 * v * r["kb_per_10s"] / 1e3 * LAION_MEAN_SECONDS / CLIP for k, v in appetite.items()}
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "clips": n,
        "reps": reps,
        "quick": a.quick,
        "audio": a.audio_dir or "synthetic",
        "mfu": a.mfu,
        "text_layers": layers,
        "flops_per_sample": flops,
        "gpu_samples_per_s": appetite,
        "laion_mean_seconds": LAION_MEAN_SECONDS,
        "command": " ".join(sys.argv),
    }
    with open(a.out, "w") as f:
        json.dump({"meta": meta, "codecs": rows}, f, indent=1)
    print(markdown(meta, rows))
    print(f"wrote {a.out}")
    return 0


def markdown(meta: dict, rows: dict) -> str:
    gpus = list(meta["gpu_samples_per_s"])
    head = (
        "| codec | kB per 10 s | decode, clips/s per core | 10 s crop of a 25 s file, clips/s | loader, "
        "samples/s per worker | " + " | ".join(f"cores per GPU ({g}) | node MB/s ({g})" for g in gpus) + " |"
    )
    lines = [head, "|" + "---|" * (5 + 2 * len(gpus))]
    for codec, r in rows.items():
        lines.append(
            f"| {codec} | {r['kb_per_10s']:.0f} | {r['decode_clips_per_s']:.0f} | "
            f"{r['crop_of_25s_clips_per_s']:.0f} | {r['loader_samples_per_s']:.0f} | "
            + " | ".join(f"{r['cores_per_gpu'][g]:.1f} | {r['node_mb_per_s'][g]:.0f}" for g in gpus)
            + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

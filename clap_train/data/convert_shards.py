"""`convert-shards`: re-encode the audio of existing webdataset shards (e.g. LAION's FLAC) into another codec.

Where FLAC decoding cannot feed the GPUs, 16-bit WAV (`pcm16`) decodes several times cheaper for more
bytes (measured in docs/PERFORMANCE.md, "Data feed"). FLAC holding 16-bit PCM becomes WAV bit for bit: the samples are
read as int16, never as floats. Every other member (captions, tags) is copied byte for byte, shard names and
`sizes.json` stay, so a preset's shard paths need only the new folder. A shard appears whole or not at all
(written beside, then renamed), so an interrupted conversion is resumed by running it again.

Nothing is lost silently: audio that cannot be decoded is copied unchanged (training counts it as a skip,
as before) and every outcome is counted in the report.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import tarfile
import time
from collections import Counter

import numpy as np
import soundfile as sf
import soxr

from clap_train.atomic import atomic_path
from clap_train.data.frames import blocks, exact_length, open_audio
from clap_train.data.shards import expand_shards, read_sizes
from clap_train.data.skips import BadSample, SkipCounter
from clap_train.data.tar_reader import AUDIO_EXTS, DEFAULT_EXTS, iter_tar_samples
from clap_train.data.writer import CODECS, OPUS_RATES, add_member, check_codec, encode_audio


def transcode(data: bytes, codec: str) -> tuple[str, bytes, str]:
    """One audio member -> (new extension, bytes, outcome). Outcomes: converted, resampled (Opus stores only
    some rates), kept_undecodable (copied as it was)."""
    try:
        with open_audio(data) as f:
            sr = f.samplerate
            if not exact_length(f):  # MP3 / Ogg: decoded to the real end, never to libsndfile's estimate
                x = np.concatenate(list(blocks(data, f)))
            else:
                lossless = f.subtype == "PCM_16" and CODECS[codec][2] == "PCM_16"  # int16 both sides
                x = f.read(dtype="int16" if lossless else "float32", always_2d=True)
                if x.shape[0] < f.frames:
                    return "", data, "kept_undecodable"  # truncated: copied, training counts it
    except (BadSample, ValueError, RuntimeError, sf.LibsndfileError):  # damaged data (concatenating no blocks)
        return "", data, "kept_undecodable"
    if x.shape[0] == 0:
        return "", data, "kept_undecodable"
    outcome = "converted"
    if codec == "opus" and sr not in OPUS_RATES:
        x, sr, outcome = soxr.resample(x, sr, 48000).astype(np.float32), 48000, "resampled"
    ext, out = encode_audio(x[:, 0] if x.shape[1] == 1 else x, sr, codec)
    return ext, out, outcome


def convert_shard(job: tuple[str, str, str]) -> dict:
    """SRC tar -> DST tar (atomic). Returns this shard's counts. Runs in worker processes."""
    src, dst, codec = job
    counts: Counter[str] = Counter()
    if os.path.exists(dst):
        return {"shards_already_done": 1, "bytes_in": os.path.getsize(src), "bytes_out": os.path.getsize(dst)}
    skips = SkipCounter(warn_every_s=1e9)
    with atomic_path(dst) as tmp, open(src, "rb") as fin, tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tout:
        for sample in iter_tar_samples(fin, src, skips, exts=DEFAULT_EXTS, max_member_bytes=1 << 30):
            key = sample["__key__"]
            for ext, data in sample.items():
                if ext.startswith("__"):
                    continue
                if ext in AUDIO_EXTS:
                    new_ext, data, outcome = transcode(data, codec)
                    counts[outcome] += 1
                    ext = new_ext or ext
                add_member(tout, f"{key}.{ext}", data)
            counts["samples"] += 1
    counts.update({f"not_copied_{k}": v for k, v in skips.counts.items()})  # what the safe reader refused
    counts.update({"shards_converted": 1, "bytes_in": os.path.getsize(src), "bytes_out": os.path.getsize(dst)})
    return dict(counts)


def convert_shards(src: str | list[str], out_dir: str, codec: str = "pcm16", workers: int = 0, progress=None) -> dict:
    """Convert every tar of `src` (a folder, glob, brace pattern or list) into `out_dir`; returns the report
    (also written as OUT/convert_report.json)."""
    check_codec(codec, 48000)  # Opus at other rates is resampled per clip (transcode)
    shards = [s for s in expand_shards(src) if os.path.isfile(s)]
    if not shards:
        raise FileNotFoundError(f"no local .tar shards in {src}")
    names = [os.path.basename(s) for s in shards]
    if len(set(names)) != len(names):
        raise ValueError("shards from several folders share names; convert one folder at a time")
    os.makedirs(out_dir, exist_ok=True)
    jobs = [(s, os.path.join(out_dir, n), codec) for s, n in zip(shards, names)]
    t0, total = time.time(), Counter()
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    pool = mp.get_context("forkserver").Pool(workers) if workers > 1 else None
    try:
        results = pool.imap(convert_shard, jobs) if pool else map(convert_shard, jobs)
        for counts in progress(results, len(jobs)) if progress else results:
            total.update(counts)
    finally:
        if pool:
            pool.close()
            pool.join()
    _write_sizes(shards, out_dir)
    report = {
        "input": src,
        "output": out_dir,
        "codec": codec,
        "shards": len(jobs),
        "seconds": round(time.time() - t0, 1),
        **dict(sorted(total.items())),
    }
    with open(os.path.join(out_dir, "convert_report.json"), "w") as f:
        json.dump(report, f, indent=1, sort_keys=True)
    return report


def _write_sizes(shards: list[str], out_dir: str) -> None:
    """sizes.json for the converted shards: the source's counts (the same samples), where it has them."""
    sizes = read_sizes(shards)
    if sizes is not None:
        with open(os.path.join(out_dir, "sizes.json"), "w") as f:
            json.dump({os.path.basename(k): v for k, v in sizes.items()}, f, indent=1, sort_keys=True)


def format_report(rep: dict) -> str:
    mb_in, mb_out = rep.get("bytes_in", 0) / 2**20, rep.get("bytes_out", 0) / 2**20
    lines = [
        f"{rep['shards']} shards -> {rep['output']} ({rep['codec']}): {rep.get('samples', 0)} samples, "
        f"{mb_in:.1f} MB -> {mb_out:.1f} MB ({mb_out / max(mb_in, 1e-9):.2f}x) in {rep['seconds']} s"
    ]
    for k in ("converted", "resampled", "kept_undecodable", "shards_already_done"):
        if rep.get(k):
            lines.append(f"  {k:>20s}: {rep[k]}")
    for k, v in rep.items():
        if k.startswith("not_copied_"):
            lines.append(f"  {k:>20s}: {v} (refused by the safe tar reader, as training would)")
    return "\n".join(lines)

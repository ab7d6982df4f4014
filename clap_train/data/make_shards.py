"""`make-shards`: a folder / CSV / JSONL of users' audio -> webdataset shards in the LAION-Audio-630K layout.

OUT/<split>/NNNNNN.tar (+ sizes.json) per split, OUT/classes.json (the class list for zero-shot),
OUT/report.json (what was written, what was skipped and why). Several processes decode and resample;
the writer takes their results in input order, so the output is byte-identical for the same input and
settings whatever the process count.

Splits: a `split` column wins; otherwise a seeded, stratified rule: within each label (or among the
unlabelled), files are ordered by a hash of (seed, relative path) and cut by the split fractions, at
least one file per asked-for split where the class has that many, so every class appears in every split
and the same seed gives the same split. The report warns of each split that came out empty and each
class some split has none of (too few files, or its files there were unreadable).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np
import soundfile as sf

from clap_train.data.audio_files import AudioItem, ReadSpec, list_audio, read_audio_file
from clap_train.data.frames import EXACT_FORMATS
from clap_train.data.skips import BadSample
from clap_train.data.writer import ShardWriter, check_codec, encode_audio, encode_json
from clap_train.prompts import DEFAULT_TEMPLATES, class_phrase


@dataclass
class MakeShardsSpec:
    sample_rate: int = 48000
    splits: dict[str, float] = field(default_factory=lambda: {"train": 0.8, "valid": 0.1, "test": 0.1})
    seed: int = 0
    templates: tuple[str, ...] = DEFAULT_TEMPLATES  # captions for labelled files without their own
    shard_size: int = 512
    workers: int = 0  # 0: as many as cores
    min_seconds: float = 0.1
    max_seconds: float = 3600.0
    classes_from_dirs: bool = True  # folder input: sub-folders are classes
    codec: str = "flac"  # writer.CODECS: flac (LAION's), pcm16 (cheap to decode), ...


def split_counts(k: int, fractions: dict[str, float]) -> dict[str, int]:
    """How a class of `k` files is cut: in proportion (largest remainder), but every split with a positive
    fraction gets at least one file while the class has one per split; a smaller class fills the largest
    splits first."""
    total = sum(fractions.values())
    wanted = [n for n in fractions if fractions[n] > 0]
    if k < len(wanted):
        by_size = sorted(wanted, key=lambda n: -fractions[n])  # stable: ties keep the order given
        return {n: int(n in by_size[:k]) for n in fractions}
    exact = {n: k * fractions[n] / total for n in fractions}
    counts = {n: max(int(exact[n]), 1) if n in wanted else 0 for n in fractions}
    while sum(counts.values()) > k:  # the minimums overdrew: take back from the most over-served
        n = max((n for n in wanted if counts[n] > 1), key=lambda n: counts[n] - exact[n])
        counts[n] -= 1
    while sum(counts.values()) < k:
        n = max(wanted, key=lambda n: exact[n] - counts[n])
        counts[n] += 1
    return counts


def assign_splits(
    items: list[AudioItem], fractions: dict[str, float], seed: int, openable: list[bool] | None = None
) -> list[str]:
    """Each item's split. Items not `openable` (empty, unreadable header: skipped later) take no share."""
    total = sum(fractions.values())
    if total <= 0 or any(v < 0 for v in fractions.values()):
        raise ValueError(f"split fractions must be non-negative with a positive sum, got {fractions}")
    groups: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        if not it.split and (openable is None or openable[i]):  # an explicit split column wins
            groups.setdefault(it.labels[0] if it.labels else "", []).append(i)
    out = [it.split or "" for it in items]
    for idx in groups.values():
        idx.sort(key=lambda i: hashlib.sha1(f"{seed}:{items[i].rel}".encode()).hexdigest())
        names = [n for n, c in split_counts(len(idx), fractions).items() for _ in range(c)]
        for i, name in zip(idx, names):
            out[i] = name
    return out


def _openable(path: str, min_seconds: float) -> bool:
    """A header read: files that cannot be opened, or that are too short by an exact count, get no place
    in a split (their decode reports why)."""
    try:
        if os.path.getsize(path) == 0:
            return False
        info = sf.info(path)
        return info.frames > 0 and (info.format not in EXACT_FORMATS or info.duration >= min_seconds)
    except Exception:  # libsndfile raises several types; the decode that follows reports the reason
        return False


def split_warnings(items: list[AudioItem], splits: list[str], kept: list[bool], fractions: dict) -> list[str]:
    """A warning for each asked-for split that came out empty, and each class some split has none of."""
    asked = [n for n, f in fractions.items() if f > 0]
    got: dict[str, Counter] = {}
    for it, split, ok in zip(items, splits, kept):
        if ok:
            got.setdefault(it.labels[0] if it.labels else "", Counter())[split] += 1
    warnings = [f"split {n!r} is empty" for n in asked if not any(c[n] for c in got.values())]
    for cls, c in sorted(got.items()):
        missing = [n for n in asked if not c[n] and any(g[n] for g in got.values())]
        if cls and missing:
            warnings.append(f"class {cls!r} ({sum(c.values())} files written) has none in {', '.join(missing)}")
    return warnings


def _encode(job: tuple[AudioItem, ReadSpec, tuple[str, ...], str]):
    """One file -> ((audio ext, audio bytes, json bytes), notes) or a skip (reason, detail). Runs in worker
    processes."""
    item, spec, templates, codec = job
    try:
        x, info = read_audio_file(item.path, spec)
    except BadSample as e:
        return None, (e.reason, e.detail)
    captions = list(item.captions) or [t.format(class_phrase(lb)) for lb in item.labels for t in templates]
    if not captions:
        return None, ("no_caption", "no caption and no label")
    notes = []
    if info.sample_rate != spec.sample_rate:
        notes.append("resampled")
    if info.channels > 1:
        notes.append("downmixed")
    peak = float(np.abs(x).max())
    if peak > 1.0:  # float sources (or resampling overshoot) above full scale: scaled, not clipped
        x = x / peak
        notes.append("rescaled")
    meta = {
        "text": captions,
        "tag": [class_phrase(lb) for lb in item.labels],  # as classes.json names them
        "original_data": {
            "path": item.rel,
            "sample_rate": info.sample_rate,
            "channels": info.channels,
            "seconds": round(info.seconds, 4),
            "format": info.format,
        },
    }
    return (*encode_audio(x, spec.sample_rate, codec), encode_json(meta)), notes


def make_shards(src: str, out_dir: str, spec: MakeShardsSpec | None = None, progress=None, log=print) -> dict:
    """Write the shards; returns the report (also saved as OUT/report.json)."""
    spec = spec or MakeShardsSpec()
    check_codec(spec.codec, spec.sample_rate)
    listing = list_audio(src, spec.classes_from_dirs)
    items = listing.items
    splits = assign_splits(items, spec.splits, spec.seed, [_openable(it.path, spec.min_seconds) for it in items])
    read = ReadSpec(sample_rate=spec.sample_rate, min_seconds=spec.min_seconds, max_seconds=spec.max_seconds)
    jobs = [(it, read, tuple(spec.templates), spec.codec) for it in items]
    os.makedirs(out_dir, exist_ok=True)
    writers: dict[str, ShardWriter] = {}
    skipped, notes, written, kept = [], Counter(), Counter(), [False] * len(items)
    workers = spec.workers or os.cpu_count() or 1
    pool = mp.get_context("forkserver").Pool(workers) if workers > 1 and len(jobs) > 1 else None
    try:
        results = pool.imap(_encode, jobs, chunksize=4) if pool else map(_encode, jobs)
        if progress is not None:
            results = progress(results, len(jobs))
        for i, (payload, extra) in enumerate(results):
            it = items[i]
            if payload is None:
                reason, detail = extra
                skipped.append({"path": it.rel, "reason": reason, "detail": detail})
                continue
            split = splits[i] or next(iter(spec.splits))  # a header libsndfile refused by path, read after all
            if split not in writers:
                writers[split] = ShardWriter(os.path.join(out_dir, split), maxcount=spec.shard_size)
            ext, audio, meta = payload
            writers[split].write(f"{i:08d}", {ext: audio, "json": meta})
            written[split] += 1
            kept[i] = True
            notes.update(extra)
    finally:
        if pool:
            pool.close()
            pool.join()
        for w in writers.values():
            w.close()
    classes = listing.classes or sorted({lb for it in items for lb in it.labels})
    with open(os.path.join(out_dir, "classes.json"), "w") as f:
        json.dump([class_phrase(c) for c in classes], f, indent=1)
    report = {
        "input": src,
        "settings": {k: v for k, v in asdict(spec).items() if k != "workers"},
        "files": len(items),
        "written": dict(sorted(written.items())),
        "skipped": len(skipped),
        "skipped_by_reason": dict(sorted(Counter(s["reason"] for s in skipped).items())),
        "notes": dict(sorted(notes.items())),
        "ignored_not_audio": listing.ignored,
        "skipped_files": skipped,
        "classes": [class_phrase(c) for c in classes],
        "warnings": split_warnings(items, splits, kept, spec.splits),
    }
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(report, f, indent=1, sort_keys=True)
    return report


def find_classes_file(shards: list[str]) -> str | None:
    """classes.json as make-shards writes it: beside the shards or one folder up (OUT/classes.json)."""
    if not shards or "://" in shards[0] or shards[0].startswith("pipe:"):
        return None
    d = os.path.dirname(os.path.abspath(shards[0]))
    for cand in (os.path.join(d, "classes.json"), os.path.join(os.path.dirname(d), "classes.json")):
        if os.path.exists(cand):
            return cand
    return None


def format_report(rep: dict) -> str:
    lines = [
        f"{rep['files']} audio files: {sum(rep['written'].values())} written "
        f"({', '.join(f'{k} {v}' for k, v in rep['written'].items()) or 'none'}), {rep['skipped']} skipped"
    ]
    for reason, n in rep["skipped_by_reason"].items():
        ex = next(s for s in rep["skipped_files"] if s["reason"] == reason)
        lines.append(f"  skipped {n:6d} {reason:18s} e.g. {ex['path']} {ex['detail']}".rstrip())
    for note, n in rep["notes"].items():
        lines.append(f"  {note:>14s}: {n}")
    if rep["ignored_not_audio"]:
        lines.append(f"  ignored {len(rep['ignored_not_audio'])} non-audio file(s), e.g. {rep['ignored_not_audio'][0]}")
    if rep["classes"]:
        lines.append(
            f"  {len(rep['classes'])} classes: {', '.join(rep['classes'][:12])}"
            + (" ..." if len(rep["classes"]) > 12 else "")
        )
    lines += [f"  warning: {w}" for w in rep.get("warnings", [])]
    return "\n".join(lines)

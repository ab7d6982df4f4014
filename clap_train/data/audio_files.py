"""Users' own audio: listing a folder, CSV or JSONL of files with captions and labels, and reading one file.

Shared by `make-shards` (files -> shards) and the inference commands (`zeroshot`, `embed`, `retrieve`).

Inputs:
- a folder: every audio file below it; with `classes_from_dirs` each first-level sub-folder is a class.
  A `<name>.txt` beside `<name>.wav` holds that clip's captions, one per line.
- a CSV: a `path` column (relative to the CSV's folder or absolute); captions from `caption`, `text` or
  any column named `caption_*` / `caption<N>`; labels from `label`, `labels`, `class` or `category`
  (several separated by `;`); an optional `split` column.
- a JSONL: one object per line with the same keys (captions and labels may be lists).
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from clap_train.data.decode import AudioSpec, read_clip
from clap_train.data.frames import blocks, exact_length, open_audio, to_mono_checked
from clap_train.data.skips import BadSample

# what libsndfile reads (1.1+: mp3 too); other files in a folder are ignored and counted
AUDIO_FILE_EXTS = frozenset(
    {"wav", "wave", "flac", "ogg", "oga", "opus", "mp3", "aiff", "aif", "aifc", "au", "snd", "caf", "w64", "rf64"}
)
CAPTION_COLUMNS = re.compile(r"^(caption|text|captions|caption_?\d+|caption_\w+)$", re.I)
LABEL_COLUMNS = ("label", "labels", "class", "category")


class InputError(ValueError):
    """The input listing itself is unusable (no path column, unreadable CSV ...)."""


@dataclass
class AudioItem:
    path: str  # absolute or as given
    rel: str  # stable name relative to the input (keys, reports, splits)
    captions: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    split: str | None = None


@dataclass
class Listing:
    items: list[AudioItem]
    ignored: list[str]  # files that are not audio (by extension)
    classes: list[str]  # class names in a stable order (sub-folders, or sorted labels)


def list_audio(src: str, classes_from_dirs: bool = False) -> Listing:
    """A folder, a .csv or a .jsonl -> the audio items it names, in a deterministic order."""
    if os.path.isdir(src):
        return _list_folder(src, classes_from_dirs)
    if not os.path.exists(src):
        raise InputError(f"{src}: no such file or folder")
    low = src.lower()
    if low.endswith(".csv") or low.endswith(".tsv"):
        rows = _read_csv(src)
    elif low.endswith(".jsonl") or low.endswith(".json"):
        rows = _read_jsonl(src)
    elif _ext(src) in AUDIO_FILE_EXTS:
        return Listing([AudioItem(src, os.path.basename(src))], [], [])
    else:
        raise InputError(f"{src}: expected a folder, a .csv/.tsv, a .jsonl, or an audio file")
    base = os.path.dirname(os.path.abspath(src))
    items = []
    for r in rows:
        p = r["path"]
        items.append(
            AudioItem(p if os.path.isabs(p) else os.path.join(base, p), p, r["captions"], r["labels"], r.get("split"))
        )
    classes = sorted({lb for it in items for lb in it.labels})
    return Listing(items, [], classes)


def list_many(srcs: list[str], classes_from_dirs: bool = False) -> Listing:
    """Several inputs (files, folders, listings) as one listing, in the order given."""
    items, ignored, classes = [], [], []
    for s in srcs:
        got = list_audio(s, classes_from_dirs)
        items += got.items
        ignored += got.ignored
        classes += [c for c in got.classes if c not in classes]
    return Listing(items, ignored, classes)


def _ext(path: str) -> str:
    return os.path.splitext(path)[1].lower().lstrip(".")


def _list_folder(root: str, classes_from_dirs: bool) -> Listing:
    items, ignored = [], []
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_dir = os.path.relpath(dirpath, root)
        label = rel_dir.split(os.sep)[0] if rel_dir != "." else None
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name)).replace(os.sep, "/")
            ext = _ext(name)
            if ext not in AUDIO_FILE_EXTS:
                if ext != "txt" or not _has_audio_sibling(dirpath, name, filenames):
                    ignored.append(rel)
                continue
            labels = [label] if classes_from_dirs and label is not None else []
            if classes_from_dirs and label is None:
                ignored.append(rel)  # a file beside the class folders belongs to no class
                continue
            items.append(AudioItem(path, rel, _sidecar_captions(path), labels))
    return Listing(items, ignored, classes if classes_from_dirs else [])


def _has_audio_sibling(dirpath: str, txt: str, filenames: list[str]) -> bool:
    stem = os.path.splitext(txt)[0]
    return any(os.path.splitext(f)[0] == stem and _ext(f) in AUDIO_FILE_EXTS for f in filenames)


def _sidecar_captions(audio_path: str) -> list[str]:
    txt = os.path.splitext(audio_path)[0] + ".txt"
    if not os.path.exists(txt):
        return []
    with open(txt, encoding="utf-8", errors="replace") as f:
        return [line.strip() for line in f if line.strip()]


def _split_labels(v) -> list[str]:
    vals = v if isinstance(v, list) else str(v).split(";") if v is not None else []
    return [str(x).strip() for x in vals if str(x).strip()]


def _row(rec: dict, where: str) -> dict:
    keys = {k.lower().strip(): k for k in rec if k is not None}
    if "path" not in keys:
        raise InputError(f"{where}: no 'path' column/key (found: {', '.join(sorted(keys)) or 'none'})")
    caps = []
    for lk, k in keys.items():
        if CAPTION_COLUMNS.match(lk):
            v = rec[k]
            caps += [str(c).strip() for c in (v if isinstance(v, list) else [v]) if c is not None and str(c).strip()]
    labels = [lb for lk, k in keys.items() if lk in LABEL_COLUMNS for lb in _split_labels(rec[k])]
    split = rec.get(keys["split"]) if "split" in keys else None
    path = str(rec[keys["path"]] or "").strip()
    if not path:
        raise InputError(f"{where}: empty path")
    return {"path": path, "captions": caps, "labels": labels, "split": str(split).strip() if split else None}


def _read_csv(src: str) -> list[dict]:
    with open(src, newline="", encoding="utf-8-sig") as f:
        sample = f.read(4096)
        f.seek(0)
        delim = "\t" if src.lower().endswith(".tsv") or sample.count("\t") > sample.count(",") else ","
        reader = csv.DictReader(f, delimiter=delim)
        return [_row(r, f"{src} line {i + 2}") for i, r in enumerate(reader)]


def _read_jsonl(src: str) -> list[dict]:
    rows = []
    with open(src, encoding="utf-8") as f:
        for i, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError as e:
                raise InputError(f"{src} line {i}: not JSON ({e})") from None
            if not isinstance(rec, dict):
                raise InputError(f"{src} line {i}: expected an object")
            rows.append(_row(rec, f"{src} line {i}"))
    return rows


@dataclass
class ReadSpec:
    """Limits for reading users' files (every failure is a `BadSample` with a reason)."""

    sample_rate: int = 48000
    min_seconds: float = 0.1
    max_seconds: float = 3600.0
    max_bytes: int = 2 << 30  # larger files are skipped unread


@dataclass
class ReadInfo:
    sample_rate: int
    channels: int
    seconds: float
    format: str


def _checked_path(path: str, spec: ReadSpec) -> None:
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise BadSample("unreadable_file", e.strerror or str(e)) from None
    if size == 0:
        raise BadSample("empty_file")
    if size > spec.max_bytes:
        raise BadSample("too_large", f"{size} bytes")


def read_audio_file(path: str, spec: ReadSpec, seconds: float | None = None) -> tuple[np.ndarray, ReadInfo]:
    """Decode any file libsndfile reads, any rate and channel count -> mono float32 `[T]` at
    `spec.sample_rate` (training mixes to mono too): the whole file, or with `seconds` its first that
    many seconds only (the rest is not decoded). Raises BadSample for unreadable, empty, silent,
    non-finite, too short or too long files."""
    import soxr

    _checked_path(path, spec)
    limits = AudioSpec(sample_rate=spec.sample_rate, max_seconds=spec.max_seconds, max_channels=1 << 10)
    clip = read_clip(path, limits, seconds, "start", None, count=seconds is None)
    x, sr = clip.samples, clip.sample_rate
    n = clip.frames if clip.frames is not None else x.shape[0]  # a head read: at least this long
    if n / sr < spec.min_seconds:
        raise BadSample("too_short", f"{n / sr:.3f} s")
    if sr != spec.sample_rate:
        x = soxr.resample(x, sr, spec.sample_rate).astype(np.float32, copy=False)
    return x, ReadInfo(sr, clip.channels, n / sr, clip.format)


def stream_audio_file(path: str, spec: ReadSpec) -> Iterator[np.ndarray]:
    """The whole file as mono float32 chunks at `spec.sample_rate`, decoded and resampled a block at a
    time: memory stays bounded for hour-long files. The checks read_audio_file makes are made as the
    stream goes (non-finite, too long) or at its end (silent, too short, truncated): a consumer sees
    BadSample from the iterator."""
    import soxr

    _checked_path(path, spec)
    with open_audio(path) as f:
        sr = f.samplerate
        limit = int(spec.max_seconds * sr)
        rs = soxr.ResampleStream(sr, spec.sample_rate, 1, dtype="float32") if sr != spec.sample_rate else None
        n, heard = 0, False
        for x in blocks(path, f):
            n += x.shape[0]
            if n > limit:
                raise BadSample("too_long", f"over max_seconds={spec.max_seconds:g}")
            m = to_mono_checked(x, whole=False)
            heard = heard or bool(np.any(m))
            if (y := rs.resample_chunk(m) if rs else m).shape[0]:
                yield y
        if rs and (y := rs.resample_chunk(np.zeros(0, np.float32), last=True)).shape[0]:
            yield y
        if n == 0:
            raise BadSample("corrupt_audio", "no frames decoded")
        if exact_length(f) and n < f.frames:
            raise BadSample("truncated_audio", f"{n} of {f.frames} frames decoded")
    if not heard:
        raise BadSample("silent_audio")
    if n / sr < spec.min_seconds:
        raise BadSample("too_short", f"{n / sr:.3f} s")

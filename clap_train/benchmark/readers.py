"""Readers for the public benchmark layouts, as their users download them (no conversion step).

- ESC-50: `audio/*.wav` + `meta/esc50.csv` (filename, fold, target, category, ...)
- UrbanSound8K: `audio/fold<N>/*.wav` + `metadata/UrbanSound8K.csv` (slice_file_name, fold, classID, class)
- AudioCaps: `<split>.csv` (audiocap_id, youtube_id, start_time, caption) + a folder of the downloaded clips,
  named by YouTube id (`<id>.wav`, `Y<id>.wav`, `<id>_<start>.wav` ...); clips not found are counted
- Clotho: `clotho_captions_<split>.csv` (file_name, caption_1..caption_5) + the split's audio folder
- shards written by `make-shards` (a split folder of .tar files and classes.json): zero-shot from the tags,
  retrieval from the captions

Each dataset is looked for under `<data_root>/<name>` and the usual download folder names.
"""

from __future__ import annotations

import csv
import glob
import os
from dataclasses import dataclass, field

from clap_train.data.audio_files import AUDIO_FILE_EXTS, AudioItem
from clap_train.prompts import class_phrase

FOLDERS = {
    "esc50": ("esc50", "ESC-50", "ESC-50-master"),
    "us8k": ("us8k", "UrbanSound8K", "urbansound8k"),
    "audiocaps": ("audiocaps", "AudioCaps"),
    "clotho": ("clotho", "Clotho"),
}


@dataclass
class BenchData:
    name: str
    items: list[AudioItem]  # clips found (labels for zero-shot, captions for retrieval)
    classes: list[str] = field(default_factory=list)
    folds: list[int] = field(default_factory=list)  # per item, when the layout has folds
    missing: list[str] = field(default_factory=list)  # clips listed but not found on disk
    source: str = ""  # where it was read from
    shards: list[str] = field(default_factory=list)  # set instead of items for make-shards data


def _rows(path: str) -> list[dict]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


def _candidates(root: str, name: str) -> list[str]:
    return [os.path.join(root, d) for d in FOLDERS.get(name, (name,))] + [root]


def _first(paths) -> str | None:
    return next((p for p in paths if os.path.exists(p)), None)


def _shards_dataset(name: str, root: str, split: str) -> BenchData | None:
    """make-shards output: <root>/<name>/<split>/*.tar (+ classes.json beside the split folders)."""
    for d in _candidates(root, name)[:-1]:
        tars = sorted(glob.glob(os.path.join(d, split, "*.tar")))
        if tars:
            cj = os.path.join(d, "classes.json")
            classes = []
            if os.path.exists(cj):
                import json

                with open(cj) as f:
                    classes = list(json.load(f))
            return BenchData(name, [], classes, source=os.path.join(d, split), shards=tars)
    return None


def _classified(name: str, meta: str, id_key: str, class_key: str, rel) -> BenchData:
    """A CSV of labelled clips with folds (ESC-50, UrbanSound8K): classes ordered by their numeric id."""
    base = os.path.dirname(os.path.dirname(meta))
    rows = _rows(meta)
    names = {int(r[id_key]): r[class_key] for r in rows}
    classes = [class_phrase(names[t]) for t in sorted(names)]
    items, folds, missing = [], [], []
    for r in rows:
        path = os.path.join(base, "audio", rel(r))
        if not os.path.exists(path):
            missing.append(rel(r))
            continue
        items.append(AudioItem(path, rel(r), labels=[class_phrase(r[class_key])]))
        folds.append(int(r["fold"]))
    return BenchData(name, items, classes, folds, missing, base)


def read_esc50(root: str) -> BenchData | None:
    meta = _first(os.path.join(d, "meta", "esc50.csv") for d in _candidates(root, "esc50"))
    if meta is None:
        return _shards_dataset("esc50", root, "test")
    return _classified("esc50", meta, "target", "category", lambda r: r["filename"])


def read_us8k(root: str) -> BenchData | None:
    meta = _first(os.path.join(d, "metadata", "UrbanSound8K.csv") for d in _candidates(root, "us8k"))
    if meta is None:
        return _shards_dataset("us8k", root, "test")
    return _classified("us8k", meta, "classID", "class", lambda r: f"fold{int(r['fold'])}/{r['slice_file_name']}")


def _audio_index(folder: str) -> dict[str, str]:
    """file stem -> path for every audio file below `folder`."""
    out = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            stem, ext = os.path.splitext(f)
            if ext.lower().lstrip(".") in AUDIO_FILE_EXTS:
                out.setdefault(stem, os.path.join(dirpath, f))
    return out


def _youtube_clip(index: dict[str, str], yid: str, start: str) -> str | None:
    s = str(int(float(start))) if start else ""
    for stem in (yid, f"Y{yid}", f"{yid}_{s}", f"Y{yid}_{s}", f"{yid}_{s}000", f"Y{yid}_{s}.000"):
        if stem in index:
            return index[stem]
    return next((p for st, p in index.items() if st.startswith((yid + "_", "Y" + yid + "_"))), None)


def read_audiocaps(root: str, split: str = "test") -> BenchData | None:
    for d in _candidates(root, "audiocaps"):
        csv_path = _first(
            [
                os.path.join(d, f"{split}.csv"),
                os.path.join(d, "dataset", f"{split}.csv"),
                os.path.join(d, "data", f"{split}.csv"),
            ]
        )
        if csv_path:
            break
    else:
        return _shards_dataset("audiocaps", root, split)
    base = os.path.dirname(csv_path)
    index = _audio_index(os.path.dirname(base) if os.path.basename(base) in ("dataset", "data") else base)
    clips: dict[str, AudioItem] = {}
    missing: list[str] = []
    for r in _rows(csv_path):
        yid = r["youtube_id"].strip()
        if yid in missing:
            continue
        if yid not in clips:
            path = _youtube_clip(index, yid, r.get("start_time", ""))
            if path is None:
                missing.append(yid)
                continue
            clips[yid] = AudioItem(path, yid)
        clips[yid].captions.append(r["caption"].strip())
    return BenchData("audiocaps", list(clips.values()), missing=missing, source=base)


def read_clotho(root: str, split: str = "evaluation") -> BenchData | None:
    for d in _candidates(root, "clotho"):
        csv_path = _first(
            [
                os.path.join(d, f"clotho_captions_{split}.csv"),
                *glob.glob(os.path.join(d, "*", f"clotho_captions_{split}.csv")),
            ]
        )
        if csv_path:
            break
    else:
        return _shards_dataset("clotho", root, split)
    base = os.path.dirname(csv_path)
    index = {}
    for folder in (os.path.join(base, split), os.path.join(base, f"clotho_audio_{split}"), base):
        if os.path.isdir(folder):
            index = {os.path.basename(p): p for p in glob.glob(os.path.join(folder, "**", "*"), recursive=True)}
            if index:
                break
    items, missing = [], []
    for r in _rows(csv_path):
        name = r["file_name"]
        caps = [r[k].strip() for k in sorted(r) if k and k.startswith("caption") and r[k] and r[k].strip()]
        if name not in index:
            missing.append(name)
            continue
        items.append(AudioItem(index[name], name, caps))
    return BenchData("clotho", items, missing=missing, source=base)


READERS = {"esc50": read_esc50, "us8k": read_us8k, "audiocaps": read_audiocaps, "clotho": read_clotho}


def read(name: str, root: str, split: str | None = None) -> BenchData | None:
    if name not in READERS:
        raise ValueError(f"unknown benchmark {name!r}; valid: {', '.join(READERS)}")
    fn = READERS[name]
    return fn(root, split) if split and name in ("audiocaps", "clotho") else fn(root)

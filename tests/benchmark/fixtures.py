"""Miniature copies of the public benchmark layouts (real file and column names, fold structure), with
clips from the synthetic sound sources so that a model trained on the default run can recognise them."""

from __future__ import annotations

import csv
import os

import numpy as np
import soundfile as sf

from clap_train.data.synthetic import COUNTS, PITCHES, captions, make_clip

ESC_CLASSES = ("bell", "whistle", "buzzer", "organ", "chirp", "drum", "hiss", "pluck")
US8K_CLASSES = ("drum", "hiss", "whistle", "buzzer")


def _clip(source: str, i: int, sr: int, rng) -> np.ndarray:
    return make_clip(source, PITCHES[i % 3], COUNTS[(i // 3) % 3], ("quiet", "loud")[i % 2], sr, rng)


def write_esc50(root: str, per_fold: int = 1, seed: int = 0) -> dict:
    """ESC-50-master/audio/<fold>-<src>-<take>-<target>.wav + meta/esc50.csv; 5 folds."""
    base = os.path.join(root, "ESC-50-master")
    os.makedirs(os.path.join(base, "audio"))
    os.makedirs(os.path.join(base, "meta"))
    rng, rows = np.random.default_rng(seed), []
    for fold in range(1, 6):
        for target, cls in enumerate(ESC_CLASSES):
            for j in range(per_fold):
                name = f"{fold}-{1000 + target * 10 + j}-A-{target}.wav"
                sf.write(os.path.join(base, "audio", name), _clip(cls, fold + j, 44100, rng), 44100)
                rows.append(
                    {
                        "filename": name,
                        "fold": fold,
                        "target": target,
                        "category": cls,
                        "esc10": "False",
                        "src_file": 1000 + target,
                        "take": "A",
                    }
                )
    with open(os.path.join(base, "meta", "esc50.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return {"base": base, "n": len(rows), "classes": list(ESC_CLASSES)}


def write_us8k(root: str, folds: int = 3, seed: int = 1) -> dict:
    """UrbanSound8K/audio/fold<N>/<fsID>-<classID>-0-<k>.wav + metadata/UrbanSound8K.csv."""
    base = os.path.join(root, "UrbanSound8K")
    os.makedirs(os.path.join(base, "metadata"))
    rng, rows = np.random.default_rng(seed), []
    for fold in range(1, folds + 1):
        os.makedirs(os.path.join(base, "audio", f"fold{fold}"))
        for cid, cls in enumerate(US8K_CLASSES):
            name = f"{100 + fold}-{cid}-0-0.wav"
            sf.write(os.path.join(base, "audio", f"fold{fold}", name), _clip(cls, fold, 22050, rng), 22050)
            rows.append(
                {
                    "slice_file_name": name,
                    "fsID": 100 + fold,
                    "start": 0.0,
                    "end": 2.0,
                    "salience": 1,
                    "fold": fold,
                    "classID": cid,
                    "class": cls,
                }
            )
    with open(os.path.join(base, "metadata", "UrbanSound8K.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return {"base": base, "n": len(rows), "folds": folds}


def write_audiocaps(root: str, n: int = 8, seed: int = 2) -> dict:
    """AudioCaps/test.csv (audiocap_id, youtube_id, start_time, caption; 5 rows per clip) + test/<id>.wav;
    the last clip of the CSV was never downloaded."""
    base = os.path.join(root, "AudioCaps")
    os.makedirs(os.path.join(base, "test"))
    rng, rows = np.random.default_rng(seed), []
    for i in range(n):
        yid = f"yt{i:03d}xYz_{i}"
        src, pitch, count = ESC_CLASSES[i % 8], PITCHES[i % 3], COUNTS[(i // 3) % 3]
        wav = make_clip(src, pitch, count, "loud", 32000, rng)
        if i < n - 1:
            sf.write(os.path.join(base, "test", f"Y{yid}_30.wav"), wav, 32000)
        for k, cap in enumerate(captions(src, pitch, count, "loud", rng, n=5)):
            rows.append({"audiocap_id": 1000 + 5 * i + k, "youtube_id": yid, "start_time": 30, "caption": cap})
    with open(os.path.join(base, "test.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return {"base": base, "n": n, "missing": [f"yt{n - 1:03d}xYz_{n - 1}"]}


def write_clotho(root: str, n: int = 6, seed: int = 3) -> dict:
    """Clotho/clotho_captions_evaluation.csv (file_name, caption_1..caption_5) + evaluation/<file>.wav."""
    base = os.path.join(root, "Clotho")
    os.makedirs(os.path.join(base, "evaluation"))
    rng, rows = np.random.default_rng(seed), []
    for i in range(n):
        src, pitch, count = ESC_CLASSES[(i * 3) % 8], PITCHES[i % 3], COUNTS[i % 3]
        name = f"recording {i} (street).wav"
        sf.write(os.path.join(base, "evaluation", name), make_clip(src, pitch, count, "quiet", 44100, rng), 44100)
        caps = captions(src, pitch, count, "quiet", rng, n=5)
        rows.append({"file_name": name, **{f"caption_{k + 1}": c for k, c in enumerate(caps)}})
    with open(os.path.join(base, "clotho_captions_evaluation.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return {"base": base, "n": n}


def write_all(root: str) -> dict:
    return {
        "esc50": write_esc50(root),
        "us8k": write_us8k(root),
        "audiocaps": write_audiocaps(root),
        "clotho": write_clotho(root),
    }

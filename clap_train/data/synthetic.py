"""A compositional synthetic audio-caption set, written as real shards in the LAION-Audio-630K layout.

Every clip is a sound *source* (timbre) at a *pitch*, repeated a *count* of times at a *loudness*.
For each source one count is held out of training (source i is never heard `COUNTS[i mod 3]` in
training): the validation and test splits contain only those unseen (source, count) pairs, so
zero-shot classification of the source on them measures compositional generalisation, not recall. Two
caption styles make two datasets:
`sentences` (several varied sentences per clip, `"text"` a list) and `tags` (AudioSet-style: only a
`"tag"` list; captions come from templates at load time). Deterministic from a seed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from clap_train.config import setting
from clap_train.data.writer import ShardWriter, encode_flac, encode_json
from clap_train.rng import rng_for

SOURCES = ("bell", "whistle", "buzzer", "organ", "chirp", "drum", "hiss", "pluck")
PITCHES = ("low", "medium", "high")
COUNTS = ("once", "twice", "three times")
LOUDNESS = ("quiet", "loud")
F0 = {"low": 220.0, "medium": 587.0, "high": 1568.0}
PEAK = {"quiet": 0.08, "loud": 0.7}

PITCH_WORDS = {
    "low": ["low", "deep", "low-pitched"],
    "medium": ["medium", "mid-range", "middle"],
    "high": ["high", "shrill", "high-pitched"],
}
COUNT_WORDS = {
    "once": ["once", "a single time", "one time"],
    "twice": ["twice", "two times"],
    "three times": ["three times", "thrice"],
}
LOUD_WORDS = {"quiet": ["quietly", "softly", "faintly"], "loud": ["loudly", "powerfully", "at high volume"]}
TEMPLATES = [
    "A {pitch} {source} sounds {count}, {loud}.",
    "Someone plays a {source} {count} at a {pitch} pitch, {loud}.",
    "The {source} rings out {count}; it is {pitch} and played {loud}.",
    "{Loud}, a {pitch} {source} is heard {count}.",
    "You can hear a {source} {count}, {pitch} in tone.",
    "A {source} with a {pitch} pitch, heard {count} and {loud}.",
]


def held_out(source: str, count: str) -> bool:
    return COUNTS.index(count) == SOURCES.index(source) % 3


def combos(split: str) -> list[tuple[str, str, str, str]]:
    keep_held = split != "train"
    return [
        (s, p, c, l) for s in SOURCES for p in PITCHES for c in COUNTS for l in LOUDNESS if held_out(s, c) == keep_held
    ]


def _event(source: str, f0: float, n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sr
    decay = np.exp(-t * 12.0)
    if source == "bell":
        x = sum(a * np.sin(2 * np.pi * f0 * r * t) for r, a in ((1, 1), (2.76, 0.5), (5.4, 0.3), (8.93, 0.2))) * decay
    elif source == "whistle":
        x = np.sin(2 * np.pi * f0 * t + 0.03 * f0 / 6 * np.sin(2 * np.pi * 6 * t))
    elif source == "buzzer":
        x = np.sign(np.sin(2 * np.pi * f0 * t)) * 0.6
    elif source == "organ":
        x = sum(np.sin(2 * np.pi * f0 * k * t) / k**0.5 for k in range(1, 7)) * np.minimum(1, t * 30)
    elif source == "chirp":
        x = np.sin(2 * np.pi * f0 * (t + t * t / (2 * t[-1] + 1e-9)))
    elif source == "drum":
        f = f0 * (1 + np.exp(-t * 30))
        x = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t * 18) + 0.3 * rng.standard_normal(n) * np.exp(-t * 60)
    elif source == "hiss":
        spec = np.fft.rfft(rng.standard_normal(n))
        fr = np.fft.rfftfreq(n, 1 / sr)
        spec[(fr < f0 * 0.7) | (fr > f0 * 1.4)] = 0
        x = np.fft.irfft(spec, n)
    elif source == "pluck":
        saw = 2 * ((f0 * t) % 1.0) - 1
        x = saw * np.exp(-t * 8)
    else:
        raise ValueError(source)
    fade = np.minimum(1, np.minimum(np.arange(n), np.arange(n)[::-1]) / (0.005 * sr))
    return x * fade


def make_clip(source, pitch, count, loud, sr: int, rng: np.random.Generator) -> np.ndarray:
    dur = rng.uniform(1.2, 2.2)
    n = int(dur * sr)
    y = np.zeros(n)
    k = COUNTS.index(count) + 1
    ev = int(rng.uniform(0.22, 0.3) * sr)
    f0 = F0[pitch] * rng.uniform(0.92, 1.08)
    # events spaced evenly inside [0.2 s, dur - 0.2 s] so a 2 s crop keeps all of them
    starts = np.linspace(0.2 * sr, n - 0.2 * sr - ev, k).astype(int) if k > 1 else [int(rng.uniform(0.2, 0.4) * sr)]
    for s in starts:
        y[s : s + ev] += _event(source, f0, ev, sr, rng)
    y = y / (np.abs(y).max() + 1e-9) * PEAK[loud] * rng.uniform(0.85, 1.0)
    y += rng.standard_normal(n) * 1e-3  # a faint noise floor: no clip is digitally silent
    return y.astype(np.float32)


def captions(source, pitch, count, loud, rng: np.random.Generator, n: int = 3) -> list[str]:
    out = []
    for ti in rng.choice(len(TEMPLATES), size=n, replace=False):
        lw = rng.choice(LOUD_WORDS[loud])
        out.append(
            TEMPLATES[ti].format(
                source=source,
                pitch=rng.choice(PITCH_WORDS[pitch]),
                count=rng.choice(COUNT_WORDS[count]),
                loud=lw,
                Loud=lw.capitalize(),
            )
        )
    return out


@dataclass
class SyntheticSpec:
    enabled: bool = setting(True, kind=bool)  # false: expect the set to be there already
    root: str = "data/synthetic"
    seed: int = setting(1234, kind=int)
    sample_rate: int = setting(32000, kind=int, low=8000, high=192000)
    n_train: dict | None = None  # per dataset: {"sentences": 3000, "tags": 1500}
    n_valid: int = setting(192, kind=int, low=1)
    n_test: int = setting(384, kind=int, low=1)
    shard_size: int = setting(250, kind=int, low=1)


def write_split(out_dir: str, dataset: str, split: str, n: int, spec: SyntheticSpec) -> dict[str, int]:
    cs = combos(split)
    sid = (DATASETS.index(dataset) + 1) * 10 + ("train", "valid", "test").index(split)
    with ShardWriter(out_dir, maxcount=spec.shard_size) as w:
        for i in range(n):
            rng = rng_for(spec.seed, sid, i)  # the set's id is its domain
            s, p, c, l = cs[i % len(cs)] if split != "train" else cs[int(rng.integers(len(cs)))]
            wav = make_clip(s, p, c, l, spec.sample_rate, rng)
            meta = {"tag": [s, p, c, l], "original_data": {"dataset": f"synthetic_{dataset}"}}
            if dataset == "sentences":
                meta["text"] = captions(s, p, c, l, rng)
            w.write(f"{split}_{i:07d}", {"flac": encode_flac(wav, spec.sample_rate), "json": encode_json(meta)})
    return w.sizes


DATASETS = ("sentences", "tags")


def ensure_synthetic(spec: SyntheticSpec, log=print) -> str:
    """Write the set under `spec.root` unless a complete copy with the same settings is there."""
    n_train = dict(spec.n_train or {"sentences": 3000, "tags": 1500})
    manifest = {
        "seed": spec.seed,
        "sample_rate": spec.sample_rate,
        "n_train": n_train,
        "n_valid": spec.n_valid,
        "n_test": spec.n_test,
        "shard_size": spec.shard_size,
        "version": 2,
    }
    mpath = os.path.join(spec.root, "manifest.json")
    os.makedirs(spec.root, exist_ok=True)
    # every rank of a multi-process launch calls this: one writes, the others wait on the lock and then
    # find the manifest
    import fcntl

    with open(os.path.join(spec.root, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure_locked(spec, manifest, mpath, n_train, log)


def _ensure_locked(spec: SyntheticSpec, manifest: dict, mpath: str, n_train: dict, log) -> str:
    try:
        with open(mpath) as f:
            if json.load(f) == manifest:
                return spec.root
    except (OSError, ValueError):
        pass
    log(f"writing the synthetic data set to {spec.root} (once) ...")
    for ds in DATASETS:
        for split, n in (("train", n_train.get(ds, 0)), ("valid", spec.n_valid), ("test", spec.n_test)):
            if n:
                write_split(os.path.join(spec.root, ds, split), ds, split, n, spec)
    with open(os.path.join(spec.root, "classes.json"), "w") as f:
        json.dump(list(SOURCES), f)
    with open(mpath, "w") as f:  # written last: its presence means the set is complete
        json.dump(manifest, f, indent=1)
    return spec.root

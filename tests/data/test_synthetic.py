import io
import json
import os
import tarfile

import numpy as np
import soundfile as sf

from clap_train.data.synthetic import (COUNTS, LOUDNESS, PITCHES, SOURCES, SyntheticSpec, combos, ensure_synthetic,
                                       held_out, make_clip)
from clap_train.data.shards import rng_for


def members(path):
    with tarfile.open(path) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers()}


def test_layout(synth_root):
    for ds in ("sentences", "tags"):
        for split in ("train", "valid", "test"):
            d = os.path.join(synth_root, ds, split)
            sizes = json.load(open(os.path.join(d, "sizes.json")))
            assert sizes and all(os.path.exists(os.path.join(d, k)) for k in sizes)
    assert json.load(open(os.path.join(synth_root, "classes.json"))) == list(SOURCES)


def test_held_out_pairs_never_in_train_and_only_in_eval(synth_root):
    for ds in ("sentences", "tags"):
        for split in ("train", "valid", "test"):
            d = os.path.join(synth_root, ds, split)
            for shard in sorted(f for f in os.listdir(d) if f.endswith(".tar")):
                for name, data in members(os.path.join(d, shard)).items():
                    if name.endswith(".json"):
                        meta = json.loads(data)
                        s, p = meta["tag"][:2]
                        assert held_out(s, p) == (split != "train")
                        assert ("text" in meta) == (ds == "sentences")


def test_every_source_has_a_held_out_pitch_and_train_pitches():
    for s in SOURCES:
        assert sum(held_out(s, p) for p in PITCHES) == 1
    assert len(combos("train")) + len(combos("test")) == len(SOURCES) * len(PITCHES) * len(COUNTS) * len(LOUDNESS)


def test_clip_is_deterministic_audible_and_bounded():
    a = make_clip("bell", "high", "twice", "loud", 32000, rng_for(1, 2, 3))
    b = make_clip("bell", "high", "twice", "loud", 32000, rng_for(1, 2, 3))
    assert np.array_equal(a, b) and np.abs(a).max() <= 0.71 and np.abs(a).max() > 0.5
    q = make_clip("bell", "high", "twice", "quiet", 32000, rng_for(1, 2, 4))
    assert np.abs(q).max() < 0.1


def test_regeneration_is_byte_identical(tmp_path):
    spec = dict(n_train={"sentences": 6, "tags": 0}, n_valid=3, n_test=3, shard_size=4)
    ensure_synthetic(SyntheticSpec(root=str(tmp_path / "a"), **spec), log=lambda *_: None)
    ensure_synthetic(SyntheticSpec(root=str(tmp_path / "b"), **spec), log=lambda *_: None)
    for rel in ("sentences/train/000000.tar", "sentences/train/000001.tar", "sentences/test/000000.tar"):
        assert open(tmp_path / "a" / rel, "rb").read() == open(tmp_path / "b" / rel, "rb").read()


def test_written_audio_rate_and_captions(synth_root):
    m = members(os.path.join(synth_root, "sentences", "train", "000000.tar"))
    key = sorted(k for k in m if k.endswith(".flac"))[0]
    y, sr = sf.read(io.BytesIO(m[key]))
    assert sr == 32000 and 1.2 <= len(y) / sr <= 2.2
    meta = json.loads(m[key.replace(".flac", ".json")])
    assert isinstance(meta["text"], list) and len(set(meta["text"])) == 3
    assert meta["tag"][0] in meta["text"][0]

import io
import json
import os
import tarfile

import numpy as np
import soundfile as sf

from clap_train.data.shards import rng_for
from clap_train.data.synthetic import (
    COUNTS,
    LOUDNESS,
    PITCHES,
    SOURCES,
    SyntheticSpec,
    combos,
    ensure_synthetic,
    held_out,
    make_clip,
)


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
                        s, p, c, l = meta["tag"]
                        assert held_out(s, c) == (split != "train")
                        assert ("text" in meta) == (ds == "sentences")


def test_every_source_has_one_held_out_count():
    for s in SOURCES:
        assert sum(held_out(s, c) for c in COUNTS) == 1
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


def test_writer_and_reader_round_trip_exactly(synth_root):
    """Clips written by the default run's writer come back through our reader bit-exact (16-bit PCM)."""
    from clap_train.data.decode import AudioSpec
    from clap_train.data.shards import expand_shards
    from clap_train.data.skips import SkipCounter
    from clap_train.data.stream import SourceSpec, decode_sample, read_shard
    from clap_train.data.synthetic import DATASETS, SyntheticSpec

    spec = SyntheticSpec()
    audio = AudioSpec(sample_rate=32000, clip_seconds=3.0, pad="pad")
    src = SourceSpec("sentences", [])
    shard = expand_shards(os.path.join(synth_root, "sentences", "valid"))[0]
    cs = combos("valid")
    n = 0
    for raw in read_shard(shard, SkipCounter(), 1 << 20):
        i = int(raw["__key__"].split("_")[1])
        rng = rng_for(spec.seed, (DATASETS.index("sentences") + 1) * 10 + 1, i)
        s, p, c, l = cs[i % len(cs)]
        want = make_clip(s, p, c, l, spec.sample_rate, rng)
        got = decode_sample(raw, src, audio, False, None)
        q = np.clip(np.round(np.clip(want, -1, 1) * 32768), -32768, 32767) / 32768
        assert got["audio_len"] == len(want)
        assert np.array_equal(got["audio"][: len(want)], q.astype(np.float32))
        assert not got["audio"][len(want) :].any()
        assert got["tags"] == [s, p, c, l] and len(got["captions"]) == 3
        n += 1
    assert n == 20

import collections
import os

import numpy as np
import pytest

from clap_train.data.decode import AudioSpec
from clap_train.data.shards import ShardPlan, expand_shards
from clap_train.data.skips import SkipCounter
from clap_train.data.stream import MixtureStream, SourceSpec, SourceStream, StreamOpts
from clap_train.data.writer import ShardWriter, encode_flac, encode_json

AUDIO = AudioSpec(sample_rate=16000, clip_seconds=0.25)


def test_plan_reads_every_shard_once_per_pass_across_slots():
    shards = [f"s{i}" for i in range(10)]
    for world, slots in ((1, 1), (2, 2), (3, 1)):
        for p in range(3):
            seen = []
            for r in range(world):
                for v in range(slots):
                    plan = ShardPlan(shards, 7, 1, r, world, v, slots, resample=False)
                    per = len(plan._pass(0))
                    seen += [plan.shard(p * per + i) for i in range(per)]
            assert sorted(seen) == sorted(shards)


def test_plan_needs_enough_shards_without_resampling():
    with pytest.raises(ValueError, match="resample=true"):
        ShardPlan(["a", "b"], 0, 0, 0, 2, 0, 2, resample=False)
    plan = ShardPlan(["a", "b"], 0, 0, 1, 2, 1, 2, resample=True)
    assert {plan.shard(i) for i in range(50)} == {"a", "b"}


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory):
    d = tmp_path_factory.mktemp("src")
    rng = np.random.default_rng(0)
    with ShardWriter(str(d), maxcount=10) as w:
        for i in range(60):
            x = rng.uniform(-0.3, 0.3, 2000 + 37 * i).astype(np.float32)
            w.write(f"k{i:03d}", {"flac": encode_flac(x, 16000), "json": encode_json({"text": [f"c{i}a", f"c{i}b"]})})
    return str(d)


def make(src_dir, state=None, **opts):
    spec = SourceSpec("s", expand_shards(src_dir))
    return SourceStream(
        spec, AUDIO, StreamOpts(seed=3, group_shards=2, buffer_samples=8, **opts), 0, 1, 0, 1, SkipCounter(), state
    )


def test_stream_is_deterministic_and_covers_each_sample_once_per_pass(tiny_source):
    s0 = make(tiny_source)
    a = [next(s0)["key"] for _ in range(60)]
    s = make(tiny_source)
    b = [next(s)["key"] for _ in range(60)]
    assert a == b and sorted(a) == [f"k{i:03d}" for i in range(60)]
    assert a != sorted(a)  # shuffled


def test_resume_from_state_continues_exactly(tiny_source):
    ref = make(tiny_source)
    ref_samples = [next(ref) for _ in range(75)]
    s = make(tiny_source)
    for _ in range(33):
        next(s)
    resumed = make(tiny_source, state=s.state())
    for want in ref_samples[33:]:
        got = next(resumed)
        assert got["key"] == want["key"] and got["caption"] == want["caption"]
        assert np.array_equal(got["audio"], want["audio"])


class Const:
    def __init__(self, v):
        self.v = v

    def __next__(self):
        return self.v


def test_mixture_shares_follow_weights_and_replay_from_position():
    mix = MixtureStream([Const(0), Const(1), Const(2)], [0.7, 0.2, 0.1], seed=0, gslot=0)
    draws = [next(mix) for _ in range(4000)]
    counts = collections.Counter(draws)
    for j, w in enumerate((0.7, 0.2, 0.1)):
        assert abs(counts[j] / 4000 - w) < 0.025  # ~3.5 binomial standard deviations
    again = MixtureStream([Const(0), Const(1), Const(2)], [0.7, 0.2, 0.1], seed=0, gslot=0, m=1234)
    assert [next(again) for _ in range(100)] == draws[1234:1334]
    other_slot = MixtureStream([Const(0), Const(1), Const(2)], [0.7, 0.2, 0.1], seed=0, gslot=1)
    assert [next(other_slot) for _ in range(100)] != draws[:100]


def test_zero_weight_source_never_drawn(tiny_source):
    a, b = make(tiny_source), make(tiny_source)
    b.src = SourceSpec("never", b.src.shards)
    mix = MixtureStream([a, b], [1.0, 0.0], seed=0, gslot=0)
    assert all(next(mix)["source"] == "s" for _ in range(200))


def test_all_bad_data_fails_fast_with_reasons(tmp_path):
    with ShardWriter(str(tmp_path), maxcount=10) as w:
        for i in range(30):
            w.write(f"k{i}", {"flac": b"garbage", "json": encode_json({"text": "x"})})
    s = make(str(tmp_path), max_consecutive_bad=25)
    with pytest.raises(RuntimeError, match="corrupt_audio"):
        next(s)


def test_missing_shards_fail_fast(tmp_path):
    spec = SourceSpec("gone", [str(tmp_path / "nope.tar")])
    s = SourceStream(spec, AUDIO, StreamOpts(), 0, 1, 0, 1, SkipCounter())
    with pytest.raises(RuntimeError, match="no readable sample"):
        next(s)
    assert os.path.exists(tmp_path)

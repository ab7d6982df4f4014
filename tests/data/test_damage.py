"""Every kind of damage is skipped and counted under its reason; random damage never escapes."""

import collections
import io
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clap_train.data.check import check_shards, verdict
from clap_train.data.decode import AudioSpec
from clap_train.data.shards import ShardPlan, stable_id
from clap_train.data.skips import BadSample, SkipCounter
from clap_train.data.stream import SourceSpec, SourceStream, StreamOpts, decode_sample
from clap_train.data.tar_reader import iter_tar_samples
from tests.data.damage import DAMAGES, good, write_tar

AUDIO = AudioSpec(sample_rate=16000, clip_seconds=0.25, max_seconds=3.0)


def expected_counts():
    return collections.Counter(r for r, _ in DAMAGES if r)


@pytest.fixture()
def damaged(tmp_path):
    """4 shards: all damage kinds (x1) + duplicates in A, a truncated tar B, a missing shard, good-only D.
    Returns (shard list in read order, number of good samples, expected counts)."""
    d = tmp_path / "shards"
    d.mkdir()
    names = [str(d / f"{i:06d}.tar") for i in range(4)]
    order = [ShardPlan(names, 9, stable_id("damaged"), 0, 1, 0, 1, False).shard(i) for i in range(4)]
    a, b, missing, last = order  # the good-only shard is read last, so one pass counts every damage
    samples_a = [(f"a{i}", good(i)) for i in range(4)]
    samples_a += [(f"bad{i}", m) for i, (_, m) in enumerate(DAMAGES)]
    samples_a += [("a0", good(99))]  # duplicate key
    write_tar(a, samples_a)
    full = write_tar(b, [(f"b{i}", good(10 + i)) for i in range(3)])
    write_tar(b, [(f"b{i}", good(10 + i)) for i in range(3)], truncate_at=len(full) * 2 // 3)
    write_tar(last, [(f"d{i}", good(20 + i)) for i in range(5)])
    n_good = 4 + sum(r is None for r, _ in DAMAGES) + 2 + 5  # a's good + the usable ones + b's complete + d's
    counts = expected_counts() + collections.Counter(duplicate_key=1, truncated_tar=1, shard_unreadable=1)
    return order, n_good, counts, missing


def test_one_pass_counts_every_damage_exactly(damaged):
    order, n_good, want, missing = damaged
    skips = SkipCounter()
    src = SourceSpec("damaged", sorted(order))
    s = SourceStream(src, AUDIO, StreamOpts(seed=9, group_shards=4, buffer_samples=0), 0, 1, 0, 1, skips)
    samples = [next(s) for _ in range(n_good)]
    assert dict(skips.counts) == dict(want)
    for x in samples:
        assert x["audio"].shape == (4000,) and np.isfinite(x["audio"]).all() and x["caption"]
    assert not os.path.exists(missing)


def test_check_data_report_and_verdict(damaged):
    order, n_good, want, _ = damaged
    rep = check_shards(sorted(order), max_seconds=3.0)
    assert rep.good == n_good
    assert dict(rep.bad) == dict(want)
    assert dict(rep.sample_rates) == {16000: n_good - 5, 44100: 1, 32000: 3, 48000: 1}
    assert sorted(rep.durations)[-1] == pytest.approx(65664 / 32000)  # the MP3s' decoded length, not estimated
    assert verdict(rep, 0.9)[0] and not verdict(rep, 0.1)[0]
    assert all(rep.where[r] for r in want)


def test_training_through_damaged_shards_logs_exact_skip_counts(damaged, tmp_path, data_root=None):
    """A real training run over the damaged shards: `data/skipped/<reason>` equals the built damage."""
    import csv

    from clap_train.run import run
    from tests.e2e.conftest import compose_cfg

    order, n_good, want, _ = damaged
    shards = ",".join(f'"{p}"' for p in sorted(order))
    cfg = compose_cfg(
        tmp_path,
        [
            "data.sources.sentences=null",
            "data.sources.tags=null",
            f"+data.sources.damaged.shards=[{shards}]",
            "data.val_sources=null",
            "data.test_sources=null",
            "synthetic.enabled=false",
            "data.batch_size=4",
            f"data.steps_per_epoch={n_good // 4}",
            "data.stream.buffer_samples=0",
            "data.stream.group_shards=4",
            "data.stream.seed=9",
            "data.audio.sample_rate=16000",
            "data.audio.max_seconds=3.0",
            "data.audio.clip_seconds=1.0",
            "callbacks.throughput.log_every_n_steps=3",
            "callbacks.best_checkpoint=null",
            "test_after_fit=false",
            "name=damaged",
        ],
    )
    assert n_good % 4 == 0
    res = run(cfg)
    assert res["global_step"] == n_good // 4
    rows = list(csv.DictReader(open(os.path.join(res["run_dir"], "csv", "metrics.csv"))))
    last = {k: float(v) for r in rows for k, v in r.items() if k.startswith("data/skipped/") and v}
    got = {k.split("/")[-1]: int(v) for k, v in last.items()}
    assert got == dict(want)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_byte_damage_never_escapes(tmp_path, data):
    """Flip, cut or splice bytes anywhere in a valid shard: reading never raises and every sample that
    comes out is well-formed."""
    clean = write_tar(tmp_path / "x.tar", [(f"k{i}", good(i)) for i in range(3)])
    raw = bytearray(clean)
    for _ in range(data.draw(st.integers(1, 6))):
        op = data.draw(st.sampled_from(["flip", "cut", "splice"]))
        pos = data.draw(st.integers(0, len(raw) - 1))
        if op == "flip":
            raw[pos] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del raw[pos : pos + data.draw(st.integers(1, 2000))]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=600))
        if not raw:
            raw = bytearray(b"\x00")
    skips = SkipCounter()
    src = SourceSpec("x", [])
    for s in iter_tar_samples(io.BytesIO(bytes(raw)), "x.tar", skips):
        try:
            out = decode_sample(s, src, AUDIO, True, np.random.default_rng(0))
        except BadSample as e:
            skips.skip(e.reason)
            continue
        assert out["audio"].shape == (4000,) and out["audio"].dtype == np.float32
        assert np.isfinite(out["audio"]).all() and isinstance(out["caption"], str) and out["caption"].strip()

"""Data mistakes fail at start-up with a message naming the source and the fix, never as a hang."""

import pytest

from clap_train.config import ConfigError
from clap_train.data.datamodule import ClapDataModule
from clap_train.data.decode import AudioSpec
from clap_train.data.shards import expand_shards
from clap_train.data.skips import SkipCounter
from clap_train.data.stream import SourceSpec, SourceStream, StreamOpts
from clap_train.data.writer import ShardWriter, encode_json
from tests.data.damage import good


def loader(tokenize, **kw):
    dm = ClapDataModule(**kw).bind(tokenize)
    dm.setup()
    return dm.train_dataloader()


def test_fewer_shards_than_readers_without_resampling(synth_root, tokenize):
    with pytest.raises(ConfigError, match="data.sources.tags: 3 shard.*resample=true"):
        loader(
            tokenize,
            sources={"tags": {"shards": f"{synth_root}/tags/train", "tag_templates": ["{}"]}},
            num_workers=4,
            steps_per_epoch=2,
        )
    loader(
        tokenize,
        sources={"tags": {"shards": f"{synth_root}/tags/train", "tag_templates": ["{}"], "resample": True}},
        num_workers=4,
        steps_per_epoch=2,
    )


def test_caption_key_matching_nothing_names_the_fields_seen(tmp_path, tokenize):
    with ShardWriter(str(tmp_path), maxcount=10) as w:
        for i in range(5):
            w.write(f"k{i}", {"flac": good(i)["flac"], "json": encode_json({"description": "a dog"})})
    with pytest.raises(ConfigError, match="data.sources.s: .*caption_key='text'.*JSON fields seen.*description"):
        loader(tokenize, sources={"s": {"shards": str(tmp_path)}}, num_workers=0, steps_per_epoch=2)
    loader(
        tokenize,
        sources={"s": {"shards": str(tmp_path), "caption_key": "description"}},
        num_workers=0,
        steps_per_epoch=2,
    )


def test_a_chosen_caption_key_matching_nothing_is_refused_even_with_tags(synth_root, tokenize):
    # tag-only data would silently train on tag captions (data.tag_templates) while check-data says missing_caption
    tags = f"{synth_root}/tags/train"
    with pytest.raises(ConfigError, match=r"data.sources.t: caption_key='caption' matches no JSON field .*'tag'"):
        loader(tokenize, sources={"t": {"shards": tags, "caption_key": "caption"}}, num_workers=0, steps_per_epoch=2)
    loader(tokenize, sources={"t": {"shards": tags}}, num_workers=0, steps_per_epoch=2)  # default key: tags used


def test_no_audio_member_is_named(tmp_path, tokenize):
    with ShardWriter(str(tmp_path), maxcount=10) as w:
        for i in range(5):
            w.write(f"k{i}", {"mp4": b"video", "json": encode_json({"text": "x"})})
    with pytest.raises(ConfigError, match="no audio member"):
        loader(tokenize, sources={"v": {"shards": str(tmp_path)}}, num_workers=0, steps_per_epoch=2)


def test_too_large_bad_fraction_stops_with_reasons(tmp_path):
    with ShardWriter(str(tmp_path), maxcount=100) as w:
        for i in range(300):
            bad = i % 3 != 0  # two thirds unusable, never 1000 in a row
            w.write(f"k{i}", {"flac": b"junk" if bad else good(i)["flac"], "json": encode_json({"text": "x"})})
    s = SourceStream(
        SourceSpec("web", expand_shards(str(tmp_path))),
        AudioSpec(sample_rate=16000, clip_seconds=0.2),
        StreamOpts(max_bad_fraction=0.5, min_samples_for_fraction=60),
        0,
        1,
        0,
        1,
        SkipCounter(),
    )
    with pytest.raises(RuntimeError, match="source 'web'.*max_bad_fraction.*corrupt_audio"):
        for _ in range(200):
            next(s)


def test_loaders_that_would_overflow_shared_memory_fail_at_start_up(synth_root, tokenize, monkeypatch):
    import shutil

    from tests.data.test_datamodule import make_dm

    dm = make_dm(synth_root, workers=2, prefetch_factor=4).bind(tokenize)
    dm.setup()
    need = 2 * 4 * 6 * 8000 * 2  # workers x prefetch x batch x 0.5 s at 16 kHz x int16
    usage = shutil.disk_usage("/dev/shm")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=need - 1))
    with pytest.raises(
        ConfigError,
        match=r"/dev/shm has 0.7 MiB free but the loaders may hold 0.7 MiB: data.num_workers=2 x data.prefetch_factor=4 "
        r"batches of 6 clips of 0.5 s \(int16\).*--shm-size",
    ):
        dm.train_dataloader()
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=need))
    dm.train_dataloader()

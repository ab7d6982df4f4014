"""Several sources in one run: shares, ranks x workers, the LAION layout, sizes counted when missing."""

import collections
import json
import os
import shutil

import pytest

from clap_train.config import ConfigError
from clap_train.data import datasets as ds_mod
from clap_train.data.datamodule import ClapDataModule
from clap_train.data.decode import AudioSpec
from clap_train.data.shards import count_samples, ensure_sizes, expand_shards
from clap_train.data.sources import expand_laion
from clap_train.data.stream import SourceSpec, StreamOpts

AUDIO = AudioSpec(sample_rate=16000, clip_seconds=0.1)


def shares(synth_root, tokenize, world, workers, n_batches, monkeypatch):
    srcs = [
        SourceSpec("a", expand_shards(f"{synth_root}/sentences/train"), 0.7, resample=True),
        SourceSpec("b", expand_shards(f"{synth_root}/tags/train"), 0.2, tag_templates=["{}"], resample=True),
        SourceSpec("c", expand_shards(f"{synth_root}/sentences/valid"), 0.1, resample=True),
        SourceSpec("zero", expand_shards(f"{synth_root}/tags/valid"), 0.0, tag_templates=["{}"]),
    ]
    counts = collections.Counter()
    for rank in range(world):
        ds = ds_mod.TrainStream(
            srcs,
            AUDIO,
            StreamOpts(seed=5, group_shards=1, buffer_samples=16),
            batch_size=20,
            steps_per_epoch=n_batches,
            rank=rank,
            world=world,
            n_slots=workers,
            tokenize=tokenize,
        )
        for w in range(workers):

            class Info:
                id, num_workers = w, workers

            monkeypatch.setattr(ds_mod, "get_worker_info", lambda: Info)
            for b in ds:
                counts.update(b["source"])
    return counts


def test_shares_match_weights_on_2x2_as_on_1(synth_root, tokenize, monkeypatch):
    for world, workers in ((1, 1), (2, 2)):
        c = shares(
            synth_root, tokenize, world, workers, 120 // (world * workers) * (world * workers) // world, monkeypatch
        )
        n = sum(c.values())
        assert n >= 2000 and "zero" not in c
        for name, w in (("a", 0.7), ("b", 0.2), ("c", 0.1)):
            assert abs(c[name] / n - w) < 0.03, (world, workers, name, c[name] / n)


def test_count_samples_and_cached_sizes(synth_root, tmp_path):
    d = tmp_path / "ds" / "train"
    shutil.copytree(f"{synth_root}/sentences/train", d)
    os.remove(d / "sizes.json")
    shards = expand_shards(str(d))
    assert count_samples(shards[0]) == 20
    sizes = ensure_sizes(shards, log=lambda *_: None)
    assert sum(sizes.values()) == 120
    assert json.load(open(d / "sizes.json")) == {os.path.basename(s): 20 for s in shards}


def test_laion_layout_root_and_datasets_are_enough(synth_root, tmp_path):
    root = tmp_path / "LAION"
    for ds in ("sentences", "tags"):
        for split in ("train", "valid", "test"):
            shutil.copytree(f"{synth_root}/{ds}/{split}", root / ds / split)
    os.remove(root / "tags" / "train" / "sizes.json")  # counted once, cached
    laion = {"root": str(root), "train": ["sentences", "tags"], "val": ["sentences"], "test": ["tags"]}
    train, val, test = expand_laion(laion)
    assert set(train) == {"sentences", "tags"} and set(val) == {"sentences"} and set(test) == {"tags"}
    dm = ClapDataModule(laion=laion, sources={"tags": {"tag_templates": ["{}"]}}, batch_size=6)
    specs = {s.name: s for s in dm.train_specs()}
    assert specs["sentences"].weight == 120 and specs["tags"].weight == 60  # weights by size
    assert specs["tags"].tag_templates == ["{}"]
    assert dm.resolve_steps_per_epoch() == 180 // 6
    assert os.path.exists(root / "tags" / "train" / "sizes.json")
    # resample auto (the LAION default): sources with fewer shards than ranks x workers draw with replacement
    assert [s.resample for s in dm.train_specs()] == ["auto", "auto"]
    dm.num_workers, dm.world = 2, 4  # 8 readers: sentences has 6 shards, tags 3
    assert {s.name: s.resample for s in dm.resolve_resample(dm.train_specs())} == {"sentences": True, "tags": True}
    dm.world = 2  # 4 readers
    assert {s.name: s.resample for s in dm.resolve_resample(dm.train_specs())} == {"sentences": False, "tags": True}
    with pytest.raises(ConfigError, match=r"data.sources.tags.resample='sometimes'; valid choices: true, false, auto"):
        ClapDataModule(laion=laion, sources={"tags": {"resample": "sometimes"}}).train_specs()
    dm2 = ClapDataModule(laion=laion, sources={"tags": None, "sentences": {"weight": 0.5}})
    assert [(s.name, s.weight) for s in dm2.train_specs()] == [("sentences", 0.5)]
    with pytest.raises(ConfigError, match="data.laion: unknown key"):
        expand_laion({"root": "x", "datsets": []})


def test_missing_source_named_at_start_up(tmp_path):
    dm = ClapDataModule(sources={"clotho": {"shards": str(tmp_path / "clotho" / "train")}})
    with pytest.raises(ConfigError, match="data.sources.clotho"):
        dm.train_specs()

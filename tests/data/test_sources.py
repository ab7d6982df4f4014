"""Mixture weights are shares of samples, whatever mix of numbers and `size` the sources give."""

import pytest

from clap_train.config import ConfigError
from clap_train.data.sources import describe_mixture, parse_sources


def _mix(synth_root, a, b):
    cfg = {
        "sentences": {"shards": f"{synth_root}/sentences/train", "weight": a},
        "tags": {"shards": f"{synth_root}/tags/train", "weight": b},
    }
    return {s.name: s.weight for s in parse_sources(cfg, "sources", ["{}"])}


def test_a_number_beside_sized_sources_is_its_share_of_samples(synth_root):
    # the README's recipe: one source reweighted to 0.5 while the others keep `size` (120 and 60 clips here)
    got = _mix(synth_root, "size", 0.5)
    assert got == pytest.approx({"sentences": 0.5, "tags": 0.5})
    got = _mix(synth_root, "size", 0.2)
    assert got == pytest.approx({"sentences": 0.8, "tags": 0.2})


def test_sizes_alone_and_numbers_alone_stay_relative(synth_root):
    assert _mix(synth_root, "size", "size") == {"sentences": 120.0, "tags": 60.0}  # 2:1, normalised by the mixer
    assert _mix(synth_root, 3.0, 1.0) == {"sentences": 3.0, "tags": 1.0}


def test_shares_over_one_beside_sized_sources_are_refused_by_name(synth_root):
    with pytest.raises(ConfigError, match=r"data.sources: weights tags=1.5 sum to 1.5 beside sources weighted by"):
        _mix(synth_root, "size", 1.5)


def test_the_resolved_mixture_reads_as_percentages(synth_root):
    cfg = {
        "sentences": {"shards": f"{synth_root}/sentences/train", "weight": "size"},
        "tags": {"shards": f"{synth_root}/tags/train", "weight": 0.25},
    }
    assert describe_mixture(parse_sources(cfg, "sources", ["{}"])) == "sentences 75.0%, tags 25.0%"


def test_a_misspelt_layout_source_is_refused_with_the_valid_names():
    from clap_train.data.sources import stage_sources

    laion = {"root": "/d", "train": ["audiocaps", "clotho"], "val": ["clotho"], "test": []}
    with pytest.raises(ConfigError, match=r"data.sources.clotoh: no such source .*: audiocaps, clotho"):
        stage_sources(laion, {"clotoh": {"weight": 0.5}}, {}, {}, None, None, None)
    train, val, _ = stage_sources(laion, {"clotho": None, "audiocaps": {"weight": 0.2}}, {}, {}, None, None, None)
    assert list(train) == ["audiocaps"] and train["audiocaps"]["weight"] == 0.2 and list(val) == ["clotho"]


def test_the_shorthand_source_takes_the_settings_its_error_suggests():
    from clap_train.data.sources import stage_sources

    train, _, _ = stage_sources(None, {"train": {"resample": True}}, {}, {}, "/d/{0..1}.tar", None, None)
    assert train == {"train": {"shards": "/d/{0..1}.tar", "resample": True}}

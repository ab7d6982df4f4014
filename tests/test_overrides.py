"""Source overrides work as the README writes them: without `+`, whether or not the config lists the source."""

import os
import subprocess
import sys

import yaml

from clap_train.overrides import hydra_overrides
from tests.conftest import REPO


def test_only_source_entries_get_the_add_or_override_prefix():
    argv = ["data=laion", "data.sources.clotho=null", "data.val_sources.a.shards=/x", "++data.sources.b.weight=1"]
    assert hydra_overrides([*argv, "optim.lr=1e-4", "-m", "data.sources=null"]) == [
        "data=laion",
        "++data.sources.clotho=null",
        "++data.val_sources.a.shards=/x",
        "++data.sources.b.weight=1",
        "optim.lr=1e-4",
        "-m",
        "data.sources=null",
    ]


def test_brace_patterns_are_quoted_for_hydra_and_dicts_are_not():
    assert hydra_overrides(
        [
            "data.train_shards=/d/{000000..000063}.tar",
            "+data.sources.x.shards=/d/{a,b}/{0..3}.tar",
            "data.val_shards='/d/{0..1}.tar'",
            "data.audio={sample_rate:16000}",
            "-m",
        ]
    ) == [
        "data.train_shards='/d/{000000..000063}.tar'",
        "+data.sources.x.shards='/d/{a,b}/{0..3}.tar'",
        "data.val_shards='/d/{0..1}.tar'",
        "data.audio={sample_rate:16000}",
        "-m",
    ]


def test_train_py_composes_laion_source_overrides_without_plus(tmp_path):
    # data=laion starts with empty source mappings: Hydra alone refuses these as "not in struct"
    args = ["data=laion", "data.laion.root=/d", "data.sources.clotho=null", "data.sources.audiocaps.weight=0.2"]
    args += ["data.test_sources.clotho=null", "data.val_shards=/v/{000000..000003}.tar", f"paths.root={tmp_path}"]
    args += ["--cfg", "job"]
    p = subprocess.run(
        [sys.executable, os.path.join(REPO, "train.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    data = yaml.safe_load(p.stdout)["data"]
    assert data["sources"] == {"clotho": None, "audiocaps": {"weight": 0.2}}
    assert data["test_sources"] == {"clotho": None}
    assert data["val_shards"] == "/v/{000000..000003}.tar"  # as the README writes it: Hydra's parser refused it

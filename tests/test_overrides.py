"""Source overrides work as the README writes them: without `+`, whether or not the config lists the source."""

import os
import subprocess
import sys

import yaml

from clap_train.overrides import open_source_overrides
from tests.conftest import REPO


def test_only_source_entries_get_the_add_or_override_prefix():
    argv = ["data=laion", "data.sources.clotho=null", "data.val_sources.a.shards=/x", "++data.sources.b.weight=1"]
    assert open_source_overrides([*argv, "optim.lr=1e-4", "-m", "data.sources=null"]) == [
        "data=laion",
        "++data.sources.clotho=null",
        "++data.val_sources.a.shards=/x",
        "++data.sources.b.weight=1",
        "optim.lr=1e-4",
        "-m",
        "data.sources=null",
    ]


def test_train_py_composes_laion_source_overrides_without_plus(tmp_path):
    # data=laion starts with empty source mappings: Hydra alone refuses these as "not in struct"
    args = ["data=laion", "data.laion.root=/d", "data.sources.clotho=null", "data.sources.audiocaps.weight=0.2"]
    args += ["data.test_sources.clotho=null", f"paths.root={tmp_path}", "--cfg", "job"]
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

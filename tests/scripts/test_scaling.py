"""The scaling script runs at CI size: the gathered loss and the eval gather on 2 gloo ranks, a checkpoint."""

import json

import pytest

from tests.conftest import run_script


@pytest.mark.slow
def test_scaling_quick_measures_every_part(tmp_path):
    out = tmp_path / "scaling.json"
    p = run_script("scaling.py", "--quick", "--ckpt-dir", tmp_path, "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.load(open(out))
    local, full = got["loss"]
    assert local["local_loss"] and not full["local_loss"] and local["world"] == 2
    assert local["received_bytes_per_rank"] == 2 * 1 * 64 * 512 * 4  # both modalities from the other rank
    assert local["seconds"] > 0 and full["formula_bytes"] > local["formula_bytes"]
    sets = {r["set"]: r for r in got["eval"]}
    assert set(sets) == {"audiocaps_test", "clotho_eval"}
    # every rank receives the whole set: at least its features
    assert all(r["bytes_received_per_rank"] >= r["features_bytes"] for r in sets.values())
    ck = got["checkpoint"]
    assert ck["bytes"] > 12 * ck["trainable"] * 0.95 and ck["write_seconds"] > 0 and ck["read_seconds"] > 0

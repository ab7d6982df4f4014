"""The benchmark script runs end to end at CI size and writes its JSON (no thresholds: machines are noisy)."""

import json

import pytest

from tests.conftest import run_script


@pytest.mark.slow
def test_bench_quick_writes_every_part(tmp_path):
    out = tmp_path / "bench.json"
    proc = run_script("bench.py", "--quick", "--reps", 1, "--out", out, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.load(open(out))
    assert got["meta"]["quick"] and got["meta"]["peak_flops"] > 0
    parts = {line["part"] for line in got["lines"]}
    assert parts == {"data", "frontend", "tower", "step", "loss"}
    for line in got["lines"]:
        if "ratio" in line:
            assert line["ours"] > 0 and line["theirs"] > 0 and line["ratio"] > 0
    tower = next(line for line in got["lines"] if line["part"] == "tower")
    assert 0 < tower["mfu_ours"] < 1.5 and tower["flops_per_step"] > 1e10
    assert "ratio" in proc.stdout

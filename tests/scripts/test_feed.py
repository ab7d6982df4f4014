"""The data-feed script runs at CI size: every codec measured, the GPU's appetite counted, the table written."""

import json

import pytest

from tests.conftest import run_script


@pytest.mark.slow
def test_feed_quick_measures_every_codec(tmp_path):
    out = tmp_path / "feed.json"
    p = run_script("feed.py", "--quick", "--clips", 4, "--gpu-samples-per-s", 900, "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    got = json.load(open(out))
    rows = got["codecs"]
    assert set(rows) == {"flac", "pcm16", "vorbis", "opus", "mp3"}
    assert got["meta"]["flops_per_sample"] > 1e10  # HTS-AT-tiny at 10 s is ~35 GFLOP forward + backward
    for r in rows.values():
        assert r["decode_clips_per_s"] > 0 and r["loader_samples_per_s"] > 0 and r["kb_per_10s"] > 10
        assert r["cores_per_gpu"]["measured"] == pytest.approx(900 / r["loader_samples_per_s"])
    # what the cheap path rests on: 16-bit WAV decodes several times faster than FLAC; lossy is far smaller
    assert rows["pcm16"]["decode_clips_per_s"] > 2 * rows["flac"]["decode_clips_per_s"]
    assert rows["vorbis"]["kb_per_10s"] < rows["flac"]["kb_per_10s"] / 3
    assert "| pcm16 |" in p.stdout

"""The one real learning run in CI: `python train.py` exactly as a new user runs it (nothing guards
learning but this)."""

import os

import pytest


@pytest.mark.slow
def test_default_run_learns_far_above_chance(default_run):
    p, res = default_run
    top1 = res["test"]["test/sentences/zeroshot_top1"]
    chance = res["test"]["test/sentences/zeroshot_chance"]
    print(
        f"default run: zero-shot {top1:.3f} vs chance {chance:.3f}; t2a R@10 "
        f"{res['test']['test/sentences/t2a_R@10']:.3f}; wall {res['wall_seconds']:.0f} s"
    )
    assert top1 >= 4 * chance
    assert res["test"]["test/sentences/t2a_R@10"] > 3 * 10 / res["test"]["test/sentences/n_clips"]
    assert "clap_train results" in p.stdout and "x chance" in p.stdout
    assert os.path.exists(res["checkpoint"])

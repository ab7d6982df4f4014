"""The one real learning run in CI: `python train.py` exactly as a new user runs it (nothing guards
learning but this)."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_default_run_learns_far_above_chance(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    p = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), f"paths.root={tmp_path}"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, p.stderr[-4000:]
    res = json.load(open(tmp_path / "runs" / "default" / "results.json"))
    top1 = res["test"]["test/sentences/zeroshot_top1"]
    chance = res["test"]["test/sentences/zeroshot_chance"]
    print(f"default run: zero-shot {top1:.3f} vs chance {chance:.3f}; t2a R@10 "
          f"{res['test']['test/sentences/t2a_R@10']:.3f}; wall {res['wall_seconds']:.0f} s")
    assert top1 >= 4 * chance
    assert res["test"]["test/sentences/t2a_R@10"] > 3 * 10 / res["test"]["test/sentences/n_clips"]
    assert "clap_train results" in p.stdout and "x chance" in p.stdout
    assert os.path.exists(res["checkpoint"])

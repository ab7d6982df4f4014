"""Kill -9 a training run (two loader workers) mid-epoch, start it again: every step after the checkpoint
has the same loss as an unbroken run with the same seed."""

import csv
import glob
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from tests.e2e.conftest import SMALL_DATA

ARGS = [
    "debug=fast",
    "data.num_workers=2",
    "data.steps_per_epoch=6",
    "trainer.max_epochs=2",
    "callbacks.last_checkpoint.every_n_train_steps=1",
    "test_after_fit=false",
    *SMALL_DATA,
]


def losses(run_dir):
    rows = list(csv.DictReader(open(os.path.join(run_dir, "csv", "metrics.csv"))))
    return {int(r["step"]): float(r["train/loss"]) for r in rows if r.get("train/loss")}


def start(tmp_path, name):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    return subprocess.Popen(
        [sys.executable, os.path.join(REPO, "train.py"), *ARGS, f"paths.root={tmp_path}", f"name={name}"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_exact(tmp_path):
    ref = start(tmp_path, "ref")
    assert ref.wait(timeout=600) == 0, ref.stderr.read()[-3000:]
    (ref_dir,) = glob.glob(str(tmp_path / "runs" / "ref*"))
    want = losses(ref_dir)
    assert len(want) == 12

    p = start(tmp_path, "killed")
    deadline = time.time() + 600
    while time.time() < deadline and p.poll() is None:
        if glob.glob(str(tmp_path / "runs" / "killed*" / "checkpoints" / "step0000004.ckpt")):
            os.killpg(p.pid, signal.SIGKILL)  # the trainer and its loader workers, no chance to clean up
            break
        time.sleep(0.02)
    p.wait(timeout=60)
    assert p.returncode == -signal.SIGKILL, "the run finished before it could be killed"

    again = start(tmp_path, "killed")  # the same command: finds its run dir and resumes by itself
    assert again.wait(timeout=600) == 0, again.stderr.read()[-3000:]
    (run_dir,) = glob.glob(str(tmp_path / "runs" / "killed*"))
    got = losses(run_dir)
    rows = [r for r in open(os.path.join(run_dir, "csv", "metrics.csv")) if r.split(",")]
    # metrics.csv holds every step exactly once: rows before the checkpoint kept, later ones logged again
    assert got.keys() == want.keys()
    steps = [
        int(r["step"]) for r in csv.DictReader(open(os.path.join(run_dir, "csv", "metrics.csv"))) if r.get("train/loss")
    ]
    assert sorted(steps) == sorted(want) and len(rows) > len(steps)
    for step, loss in got.items():
        assert abs(loss - want[step]) < 1e-6, (step, loss, want[step])

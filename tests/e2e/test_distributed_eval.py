"""Two CPU ranks through `train.py` as a user runs them: eval sets that split unevenly across ranks finish,
and a collective that some rank never reaches ends the job with a report instead of a hang."""

import os
import subprocess
import sys
import time

import lightning as L
import pytest

from tests.conftest import REPO
from tests.e2e.conftest import SMALL_DATA


def _train(tmp_path, extra=(), timeout=300):
    args = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "debug=fast", f"paths.root={tmp_path}",
            *SMALL_DATA, "callbacks.progress=null", *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    t0 = time.time()
    p = subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *args], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=timeout)
    return p, time.time() - t0


@pytest.mark.slow
def test_ddp_on_two_cpu_ranks_with_one_eval_shard_finishes(tmp_path):
    # 16 clips in one shard: rank 1 has no validation or test batches at all (it hung here before)
    p, _ = _train(tmp_path, ["synthetic.n_valid=16", "synthetic.n_test=16"])
    assert p.returncode == 0, p.stderr[-3000:]
    assert "test/" in p.stdout or "zeroshot" in p.stdout


class StallRank1(L.Callback):
    """Rank 1 stops taking part after step 2 (as a rank stuck in I/O or a bug would)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_rank == 1 and trainer.global_step == 2:
            time.sleep(600)


@pytest.mark.slow
def test_a_collective_some_rank_never_reaches_ends_the_job_with_a_report(tmp_path):
    p, took = _train(tmp_path, ["distributed.timeout_s=5", "+callbacks.stall._target_="
                                "tests.e2e.test_distributed_eval.StallRank1"], timeout=200)
    assert p.returncode != 0 and took < 150
    err = p.stderr
    assert "collective time-out" in err and "distributed.timeout_s" in err, err[-3000:]
    # rank 0 went on to the step-end checkpoint (Lightning's own collective, watched through the strategy)
    assert "rank 0 waited more than 5 s (distributed.timeout_s) in strategy." in err and "called from model_checkpoint.py" in err, err[-3000:]
    assert "rank 1: at training step 1 for" in err, err[-3000:]
    assert "rank 1: stopping, because rank 0 waited" in err, err[-3000:]  # every rank ends, none hangs


def test_bad_timeout_is_a_start_up_error(tmp_path):
    from clap_train.run import run
    from clap_train.config import ConfigError
    from tests.e2e.conftest import compose_cfg

    with pytest.raises(ConfigError, match=r"distributed\.timeout_s=-1"):
        run(compose_cfg(tmp_path, ["distributed.timeout_s=-1"]))

"""Two CPU ranks through `train.py` as a user runs them: eval sets that split unevenly across ranks finish,
and a collective that some rank never reaches ends the job with a report instead of a hang."""

import json
import os
import time

import lightning as L
import pytest
import torch

from tests.e2e.conftest import train_py


def _train(tmp_path, extra=(), timeout=300):
    p = train_py(tmp_path, ["trainer=ddp", *extra], timeout=timeout, check=False)
    return p, p.seconds


class CountHostSyncs(L.Callback):
    """Per training step, what makes a GPU's host wait for the device: a scalar read (.item(), bool(): the
    dispatcher's _local_scalar_dense), nonzero, and .tolist() (which reads memory without dispatching, so
    it is wrapped); training only, over the whole fit; one JSON per rank."""

    def __init__(self, out: str):
        self.out, self.by_step = out, {}

    def on_train_start(self, trainer, pl_module):
        import traceback

        from torch.utils._python_dispatch import TorchDispatchMode

        def record(name):
            if trainer.training:
                where = [
                    f"{os.path.basename(f.filename)}:{f.lineno}"
                    for f in traceback.extract_stack()[:-2]
                    if "/site-packages/torch/" not in f.filename
                ][-7:]
                self.by_step.setdefault(trainer.global_step, []).append(f"{name} at {' < '.join(where[::-1])}")

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if str(func.overloadpacket) in ("aten._local_scalar_dense", "aten.nonzero"):
                    record(str(func.overloadpacket))
                return func(*args, **(kwargs or {}))

        self.tolist = torch.Tensor.tolist

        def tolist(t):
            record("tolist")
            return self.tolist(t)

        torch.Tensor.tolist = tolist
        self.mode = Mode()
        self.mode.__enter__()

    def on_train_end(self, trainer, pl_module):
        self.mode.__exit__(None, None, None)
        torch.Tensor.tolist = self.tolist
        with open(os.path.join(self.out, f"syncs_rank{trainer.global_rank}.json"), "w") as f:
            json.dump(self.by_step, f, indent=1)


@pytest.mark.slow
def test_ddp_on_two_cpu_ranks_with_one_eval_shard_finishes(tmp_path):
    # 16 clips in one shard: rank 1 has no validation or test batches at all (it hung here before)
    steady = [
        "trainer.max_steps=6",
        "trainer.max_epochs=2",
        "trainer.log_every_n_steps=100",
        "callbacks.last_checkpoint.every_n_train_steps=100",
        "callbacks.throughput.log_every_n_steps=100",
        "+callbacks.syncs._target_=tests.e2e.test_distributed_eval.CountHostSyncs",
        f"+callbacks.syncs.out={tmp_path}",
    ]
    p, _ = _train(tmp_path, ["synthetic.n_valid=16", "synthetic.n_test=16", *steady])
    assert p.returncode == 0, p.stderr[-3000:]
    assert "test/" in p.stdout or "zeroshot" in p.stdout
    # host syncs in steady state (not the FLOP-counted first step, the epoch boundary or the end of fit): one
    # per step per rank of ours, the agreed finite-and-preemption check; two more come from outside, named
    # in docs/PERFORMANCE.md: Lightning's per-step SIGTERM broadcast (DDP) and transformers' check of the
    # caption mask for padding (skipped when the tower is compiled)
    outside = {"training_epoch_loop.py", "masking_utils.py"}
    for rank in (0, 1):
        by_step = json.load(open(tmp_path / f"syncs_rank{rank}.json"))
        for step in ("1", "2", "3", "5"):
            sites = [s.split(" at ")[1].split(":")[0] for s in by_step.get(step, [])]
            ours = [s for s in sites if s not in outside]
            assert ours == ["step.py"], (rank, step, by_step.get(step))  # the agreed check (step.agreed_step)


class StallRank1(L.Callback):
    """Rank 1 stops taking part after step 2 (as a rank stuck in I/O or a bug would)."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_rank == 1 and trainer.global_step == 2:
            time.sleep(600)


@pytest.mark.slow
def test_a_collective_some_rank_never_reaches_ends_the_job_with_a_report(tmp_path):
    p, took = _train(
        tmp_path,
        ["distributed.timeout_s=5", "+callbacks.stall._target_=tests.e2e.test_distributed_eval.StallRank1"],
        timeout=200,
    )
    assert p.returncode != 0 and took < 150
    err = p.stderr
    assert "collective time-out" in err and "distributed.timeout_s" in err, err[-3000:]
    # rank 0 went on to the step-end checkpoint (Lightning's own collective, watched through the strategy)
    assert (
        "rank 0 waited more than 5 s (distributed.timeout_s) in strategy." in err
        and "called from model_checkpoint.py" in err
    ), err[-3000:]
    assert "rank 1: at training step 1 for" in err, err[-3000:]
    assert "rank 1: stopping, because rank 0 waited" in err, err[-3000:]  # every rank ends, none hangs


def test_bad_timeout_is_a_start_up_error(tmp_path):
    from clap_train.config import ConfigError
    from clap_train.run import run
    from tests.e2e.conftest import compose_cfg

    with pytest.raises(ConfigError, match=r"distributed\.timeout_s=-1"):
        run(compose_cfg(tmp_path, ["distributed.timeout_s=-1"]))

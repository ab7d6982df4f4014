"""The preemption signal mid-run: checkpoint at the next step boundary, stop; the re-launch resumes exactly."""

import csv
import os
import signal

import lightning as L
import pytest

from tests.e2e.conftest import compose_cfg, train_py


class SignalAt(L.Callback):
    """Sends the signal SLURM would send (`--signal=USR1@...`) to this process after a given step."""

    def __init__(self, step: int, signal_name: str = "SIGUSR1"):
        self.step, self.signum = step, getattr(signal, signal_name)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


def rows(run_dir):
    return [r for r in csv.DictReader(open(os.path.join(run_dir, "csv", "metrics.csv"))) if r.get("train/loss")]


def test_signal_checkpoints_stops_and_the_relaunch_resumes_exactly(tmp_path, data_root, fast_run):
    from clap_train.run import run

    _, ref = fast_run  # the same config, never interrupted
    overrides = [
        "callbacks.keep_last_checkpoints.keep_last=100",
        "trainer.max_epochs=2",
        "+callbacks.inject._target_=tests.e2e.test_preemption.SignalAt",
        "+callbacks.inject.step=3",
    ]
    cfg = compose_cfg(tmp_path, overrides, data_root)
    first = run(cfg)
    # the signal came after step 3; the checkpoint is taken at the next step boundary
    assert first["preempted_at"] == 4 and first["global_step"] == 4
    assert os.path.exists(os.path.join(first["run_dir"], "checkpoints", "step0000004.ckpt"))
    assert len(rows(first["run_dir"])) == 4  # flushed before stopping
    second = run(compose_cfg(tmp_path, overrides, data_root))  # what the requeued job runs
    assert second["run_dir"] == first["run_dir"] and second["global_step"] == 8 and "test" in second
    got = {int(r["step"]): float(r["train/loss"]) for r in rows(second["run_dir"])}
    want = {int(r["step"]): float(r["train/loss"]) for r in rows(ref["run_dir"])}
    assert len(rows(second["run_dir"])) == 8 and got.keys() == want.keys()  # every step once
    for s in want:
        assert got[s] == pytest.approx(want[s], abs=1e-5), s


def _train(tmp_path, name, extra=()):
    train_py(
        tmp_path,
        [
            f"name={name}",
            "trainer=ddp",
            "trainer.precision=32-true",
            "trainer.max_epochs=2",
            "data.num_workers=1",
            *extra,
        ],
    )
    (run_dir,) = [str(p) for p in (tmp_path / "runs").glob(f"{name}*") if p.name != f"{name}-multirun"]
    return run_dir


@pytest.mark.slow
def test_two_ranks_preempted_mid_epoch_resume_exactly(tmp_path):
    """Each rank reads its own shards, so each rank's stream position must come back (gathered into the
    checkpoint, not only rank 0's)."""
    # the reference also checkpoints by time, every step: rank 0's clock agreed through the finite check
    ref = _train(
        tmp_path,
        "ref",
        ["callbacks.last_checkpoint.every_n_minutes=1e-9", "callbacks.keep_last_checkpoints.keep_last=100"],
    )
    assert len([n for n in os.listdir(os.path.join(ref, "checkpoints")) if n.startswith("step")]) == 8
    inject = ["+callbacks.inject._target_=tests.e2e.test_preemption.SignalAt", "+callbacks.inject.step=2"]
    cut = _train(tmp_path, "cut", inject)
    assert len(rows(cut)) == 3  # stopped after step 3 of 8
    _train(tmp_path, "cut", inject)  # the requeued job
    got = {int(r["step"]): float(r["train/loss"]) for r in rows(cut)}
    want = {int(r["step"]): float(r["train/loss"]) for r in rows(ref)}
    assert got.keys() == want.keys() and len(want) == 8
    for s in want:
        assert got[s] == pytest.approx(want[s], abs=1e-5), s

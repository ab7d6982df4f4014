"""Preemption and time limits on SLURM: checkpoint at the next step boundary, requeue, stop.

This callback is the one owner of the warning signal (`#SBATCH --signal=USR1@<seconds>`; Lightning's
SLURMEnvironment is built with auto_requeue=False). The handler only records the signal; the work happens
at the next training-step boundary, where the data position and RNG states are consistent (exact resume
needs that): every rank agrees that a signal arrived (one all-reduce per step, a single number, only
when distributed), a checkpoint is written atomically in the run directory (the loggers flush with it,
callbacks.FlushLogsWithCheckpoints), rank 0 asks SLURM to requeue the job, and training stops. The
requeued job starts in the same deterministic run directory and resumes from that checkpoint (`resume=auto`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess

import lightning as L

from clap_train.config import ConfigError
from clap_train.distributed import agree

log = logging.getLogger("clap_train")


def slurm_job_id() -> str | None:
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array:
        return f"{array}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


class Preemption(L.Callback):
    def __init__(self, signals: list[str] = ("SIGUSR1", "SIGUSR2"), requeue: bool = True, dirpath: str | None = None):
        self.signums = []
        for name in signals:
            num = getattr(signal, str(name), None)
            if not isinstance(num, signal.Signals):
                raise ConfigError(f"callbacks.preemption.signals: {name!r} is not a signal of this system")
            self.signums.append(num)
        self.requeue, self.dirpath = requeue, dirpath
        self.received: int | None = None
        self.stopped_at: int | None = None  # global step of the preemption checkpoint
        self._previous: dict = {}

    def _handler(self, signum, frame) -> None:
        self.received = signum  # nothing else here: the step boundary does the work

    def on_fit_start(self, trainer, pl_module) -> None:
        # voted with the step's all-ranks finite check: one host sync per step for both
        pl_module.step_votes["stop"] = lambda: self.received is not None
        # USR1: our sbatch templates (`--signal=USR1@180`); USR2: what submitit asks SLURM for. Taking it
        # over here replaces submitit's own handler, so one component decides (hydra/launcher=slurm).
        for num in self.signums:
            self._previous[num] = signal.signal(num, self._handler)

    def on_fit_end(self, trainer, pl_module) -> None:
        for num, prev in self._previous.items():
            signal.signal(num, prev)
        self._previous = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # a signal may reach the ranks at different steps: decided together
        if not agree(trainer, pl_module, "stop", self.received is not None):
            return
        step = trainer.global_step
        path = os.path.join(
            self.dirpath or os.path.join(trainer.default_root_dir, "checkpoints"), f"step{step:07d}.ckpt"
        )
        trainer.save_checkpoint(path)  # atomic (AtomicCheckpointIO), loggers flushed with it; every rank
        self.stopped_at = step
        if trainer.is_global_zero:
            log.warning(
                "signal %s: checkpoint %s written at step %d",
                signal.Signals(self.received).name if self.received else "(on another rank)",
                path,
                step,
            )
            job = slurm_job_id()
            if self.requeue and job:
                res = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
                if res.returncode == 0:
                    log.warning("requeued SLURM job %s; it resumes from %s", job, path)
                else:
                    log.error(
                        "scontrol requeue %s failed (%s): resume by hand with the same command", job, res.stderr.strip()
                    )
        trainer.should_stop = True

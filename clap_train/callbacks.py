"""Training-time measurements: throughput, data-wait fraction, model FLOPs utilisation, skipped data."""

from __future__ import annotations

import time

import lightning as L
import torch


def measure_peak_flops(seconds: float = 0.5) -> float:
    """Achieved FLOP/s of a large fp32 matmul on this device: the yardstick MFU is measured against."""
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    n = 2048 if dev == "cpu" else 8192
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    if dev == "cuda":
        torch.cuda.synchronize()
    return 2 * n ** 3 * reps / (time.perf_counter() - t0)


class Throughput(L.Callback):
    """Logs `perf/samples_per_s` (global), `perf/data_wait_frac`, `perf/mfu` and `data/skipped/<reason>`.

    MFU = model FLOPs per step (counted on the first step, attention included) x steps/s over the
    device's peak; `peak_flops` null means measured with a matmul at start (on GPU pass the datasheet
    bf16 figure for a conventional MFU).
    """

    def __init__(self, log_every_n_steps: int = 10, peak_flops: float | None = None):
        self.every, self.peak = log_every_n_steps, peak_flops
        self._t_end: float | None = None
        self._wait = self._busy = 0.0
        self._samples = 0

    def setup(self, trainer, pl_module, stage):
        # measured before the loader workers start, so they do not steal the cores being measured
        if self.peak is None and stage == "fit":
            self.peak = measure_peak_flops()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        now = time.perf_counter()
        if self._t_end is not None:
            self._wait += now - self._t_end
        self._t_start = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.perf_counter()
        self._busy += now - self._t_start
        self._samples += batch["audio"].shape[0] * trainer.world_size
        self._t_end = now
        if trainer.global_step % self.every or not self._busy:
            return
        total = self._wait + self._busy
        steps = self.every
        metrics = {"perf/samples_per_s": self._samples / total, "perf/data_wait_frac": self._wait / total}
        flops = getattr(pl_module, "flops_per_step", None)
        if flops and self.peak:
            metrics["perf/mfu"] = flops * steps / total / self.peak
        dm = getattr(trainer, "datamodule", None)
        for reason, n in (dm.skip_counts() if dm is not None and hasattr(dm, "skip_counts") else {}).items():
            metrics[f"data/skipped/{reason}"] = float(n)
        pl_module.log_dict(metrics, batch_size=batch["audio"].shape[0])
        self.last = metrics
        self._wait = self._busy = 0.0
        self._samples = 0


class KeepLastCheckpoints(L.Callback):
    """Keep the newest `keep_last` step checkpoints in `dirpath` (never deleting the newest valid one)."""

    def __init__(self, dirpath: str, keep_last: int = 3):
        self.dirpath, self.keep_last = dirpath, keep_last

    def _prune(self, trainer):
        if trainer.is_global_zero:
            from clap_train.checkpoints.files import prune

            prune(self.dirpath, self.keep_last)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._prune(trainer)

    def on_train_end(self, trainer, pl_module):
        self._prune(trainer)


class FlushLogsWithCheckpoints(L.Callback):
    """Every step up to a checkpoint is in metrics.csv if the checkpoint is on disk, so a job killed later and
    resumed from it leaves no gap: loggers flush when a checkpoint is taken, and the checkpoint's own step
    row (logged by Lightning only after the checkpoint) travels inside it."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        if trainer.is_global_zero:
            for lg in trainer.loggers:
                lg.save()
        # Lightning logs a step's metrics after the on_train_batch_end hooks that take checkpoints: keep the
        # row with the checkpoint, so a run killed right after it can write that row when it resumes.
        try:
            row = {k: float(v) for k, v in trainer._logger_connector.metrics["log"].items()}
            step = int(trainer.fit_loop.epoch_loop._batches_that_stepped)
        except (AttributeError, KeyError, TypeError, ValueError):
            return
        if row:
            checkpoint["pending_log_row"] = {**row, "step": step}

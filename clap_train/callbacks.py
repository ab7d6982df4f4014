"""Training-time callbacks: throughput, data-wait fraction, model FLOPs utilisation, skipped data; checkpoint
retention and log flushing; the progress bar."""

from __future__ import annotations

import logging
import time

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar

from clap_train.config import ConfigError, check_number
from clap_train.distributed import agree
from clap_train.flops import measure_peak_flops, precision_dtype

log = logging.getLogger("clap_train")


def resolve_monitor(cb, name: str, val_sources: dict[str, bool]) -> bool:
    """A checkpoint callback's validation `monitor`: `auto` becomes val/mean/zeroshot_top1 when every
    validation source has zero-shot classes, else val/mean/t2a_R@1 (LAION's sources have captions only);
    a named val/ metric that no source will log is a start-up error, not a crash after the first epoch.
    `val_sources`: name -> has zero-shot classes. Returns False when the callback has nothing to follow."""
    from clap_train.eval import retrieval, zeroshot

    monitor = getattr(cb, "monitor", None)
    if not isinstance(cb, ModelCheckpoint) or not monitor:
        return True
    if monitor == "auto":
        if not val_sources:
            log.info("callbacks.%s: no validation sources, so no metric to follow: not used", name)
            return False
        cb.monitor = "val/mean/zeroshot_top1" if all(val_sources.values()) else "val/mean/t2a_R@1"
        log.info("callbacks.%s.monitor: %s", name, cb.monitor)
        return True
    if not monitor.startswith("val/"):
        return True
    metrics = {
        src: {*retrieval.METRICS, "n_clips", "n_captions", *(zeroshot.METRICS if zs else ())}
        for src, zs in val_sources.items()
    }
    if val_sources:
        metrics["mean"] = set.intersection(*metrics.values())
    valid = sorted(f"val/{src}/{m}" for src, ms in metrics.items() for m in ms)
    if monitor not in valid:
        src = monitor.split("/")[1] if monitor.count("/") >= 2 else ""
        lacking = not all(val_sources.values()) if src == "mean" else val_sources.get(src) is False
        why = (
            "there are no validation sources"
            if not val_sources
            else "zero-shot metrics need zeroshot_classes on " + ("every source" if src == "mean" else "that source")
            if monitor.split("/")[-1] in zeroshot.METRICS and lacking
            else "no validation source logs it"
        )
        shown = [v for v in valid if v.startswith("val/mean/")] or valid
        raise ConfigError(
            f"callbacks.{name}.monitor={monitor!r}: {why}; valid choices: auto, "
            + ", ".join(shown)
            + (f" (and the same per source: {', '.join(val_sources)})" if len(shown) < len(valid) else "")
        )
    return True


class Throughput(L.Callback):
    """Logs `perf/samples_per_s` (global), `perf/data_wait_frac`, `perf/mfu` and `data/skipped/<reason>`.

    MFU = model FLOPs per step (counted on the first step, attention included) x steps/s over the
    device's peak in the run's dtype; `peak_flops` null means measured with a matmul at start (best of
    several windows; on GPU pass the datasheet bf16 figure for a conventional MFU).
    """

    def __init__(self, log_every_n_steps: int = 10, peak_flops: float | None = None, peak_seconds: float = 1.0):
        check_number("callbacks.throughput.peak_seconds", peak_seconds, float, 0, low_open=True)
        self.every, self.peak, self.peak_seconds = log_every_n_steps, peak_flops, float(peak_seconds)
        self._t_end: float | None = None
        self._wait = self._busy = 0.0
        self._samples = 0

    def setup(self, trainer, pl_module, stage):
        # measured before the loader workers start, so they do not steal the cores being measured
        if self.peak is None and stage == "fit":
            # against the peak of the dtype the run trains in: a bf16 run against the fp32 (TF32) peak
            # overstated MFU about 2x
            self.dtype = precision_dtype(trainer.precision)
            # rank 0 measures alone and tells the others: ranks measuring at once on shared cores each
            # read a fraction of the peak
            peak = (
                measure_peak_flops(self.peak_seconds, trainer.strategy.root_device.type, self.dtype)
                if trainer.global_rank == 0
                else None
            )
            self.peak = trainer.strategy.broadcast(peak, src=0) if trainer.world_size > 1 else peak

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


class EvalPictures(L.Callback):
    """After each validation (and the test), per source: a similarity heatmap of a fixed set of clips (the
    first `n_clips` in evaluation order, each against its first caption) and, where the source has zero-shot
    classes, the confusion matrix. Saved as PNG in `<run_dir>/plots/` (the latest of each, overwritten) and
    sent to the loggers that take images (wandb, TensorBoard)."""

    def __init__(self, dirpath: str, n_clips: int = 16):
        self.dirpath, self.n_clips = dirpath, n_clips
        self.written: list[str] = []

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self._draw(trainer, pl_module, "val")

    def on_test_end(self, trainer, pl_module):
        self._draw(trainer, pl_module, "test")

    def _draw(self, trainer, pl_module, stage: str) -> None:
        if not trainer.is_global_zero:
            return
        from clap_train.eval.retrieval import paired_similarity
        from clap_train.plots import similarity_heatmap, zeroshot_confusion_png

        step = trainer.global_step
        for src, a in (getattr(pl_module, "eval_arrays", {}).get(stage) or {}).items():
            sim, clips, caps = paired_similarity(a["audio"], a["text"], a["owner"], self.n_clips)
            stem = stage if src == stage else f"{stage}_{src}"  # data.val_shards' source is called "val"
            name = f"{stem}_similarity"
            png = similarity_heatmap(
                sim.numpy(),
                [a["keys"][i] for i in clips.tolist()],
                [a["captions"][j] for j in caps.tolist()],
                f"{stage}/{src}: audio-text similarity at step {step}",
                self._path(name),
            )
            self._send(trainer, f"{stage}/{src}/similarity", png, step)
            if "labels" in a and (a["labels"] >= 0).any():
                png = zeroshot_confusion_png(
                    a["audio"],
                    a["prototypes"],
                    a["labels"],
                    a["classes"],
                    self._path(f"{stem}_confusion"),
                    f"{stage}/{src} at step {step}: zero-shot",
                )
                self._send(trainer, f"{stage}/{src}/confusion", png, step)

    def _path(self, name: str) -> str:
        import os

        path = os.path.join(self.dirpath, name + ".png")
        if path not in self.written:
            self.written.append(path)
        return path

    @staticmethod
    def _send(trainer, key: str, png: bytes, step: int) -> None:
        import io

        for lg in trainer.loggers:
            kind = type(lg).__name__
            if kind == "WandbLogger":
                from PIL import Image

                lg.log_image(key=key, images=[Image.open(io.BytesIO(png))], step=step)
            elif kind == "TensorBoardLogger":
                from matplotlib.image import imread

                lg.experiment.add_image(key, imread(io.BytesIO(png), format="png")[..., :3], step, dataformats="HWC")


class ProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar with the training loss read only when the bar redraws (every `refresh_rate`
    steps): a metric logged with prog_bar=True is turned into a number after every batch, a host sync that
    stalls a GPU's queue each step."""

    def get_metrics(self, trainer, pl_module):
        items = super().get_metrics(trainer, pl_module)
        loss = getattr(pl_module, "last_loss", None)
        if trainer.training and loss is not None:
            items["loss"] = f"{float(loss):.3f}"
        return items


class PeriodicCheckpoint(ModelCheckpoint):
    """ModelCheckpoint every `every_n_train_steps`, or with `every_n_minutes` every N minutes of training
    (steps then ignored): at GPU step times a step count means seconds apart for a fast model and hours for a
    slow one. `auto`: 30 minutes on GPU, steps on CPU. Rank 0's clock decides; on several ranks its vote
    rides in the step's finite-check all-reduce (no collective of its own, unlike Lightning's
    `train_time_interval`, which broadcasts every step and is ignored under manual optimisation)."""

    def __init__(self, every_n_minutes: float | str | None = None, **kw):
        m = every_n_minutes
        if m not in (None, "auto") and (isinstance(m, bool) or not isinstance(m, (int, float)) or m <= 0):
            raise ConfigError(
                f"callbacks.last_checkpoint.every_n_minutes={m!r}: must be minutes > 0, auto "
                "(30 on GPU, steps on CPU) or null (every_n_train_steps)"
            )
        super().__init__(**kw)
        self.every_n_minutes, self.minutes = m, None

    def setup(self, trainer, pl_module, stage):
        super().setup(trainer, pl_module, stage)
        m = self.every_n_minutes
        self.minutes = (30.0 if trainer.strategy.root_device.type == "cuda" else None) if m == "auto" else m
        self._since = time.monotonic()
        if self.minutes and hasattr(pl_module, "step_votes"):
            pl_module.step_votes["checkpoint"] = lambda: trainer.is_global_zero and self._due()

    def _due(self) -> bool:
        return time.monotonic() - self._since >= float(self.minutes) * 60.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not self.minutes:
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        # rank 0's clock decides (ranks' clocks drift)
        due = agree(trainer, pl_module, "checkpoint", trainer.is_global_zero and self._due())
        if not due or self._should_skip_saving_checkpoint(trainer):
            return
        self._since = time.monotonic()
        candidates = self._monitor_candidates(trainer)
        self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)

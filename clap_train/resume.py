"""Where a run continues from: `ckpt_path` when given, else (`resume=auto`) the newest complete checkpoint
in its own run directory, so a requeued job picks up where it stopped; checked against the model before
Lightning restores it. `resume=never` moves the previous run's files aside first."""

from __future__ import annotations

import logging
import os
import time

from omegaconf import DictConfig

from clap_train.checkpoints.files import is_valid, newest_valid
from clap_train.checkpoints.load import check_compatible, read_checkpoint
from clap_train.config import ConfigError

log = logging.getLogger("clap_train")


def find_resume(cfg: DictConfig, ckpt_dir: str) -> str | None:
    """`ckpt_path` wins; otherwise `resume=auto` picks this run dir's last.ckpt (a requeued job resumes)."""
    if cfg.get("ckpt_path"):
        if not os.path.exists(cfg.ckpt_path):
            raise ConfigError(f"ckpt_path={cfg.ckpt_path}: file not found")
        if not is_valid(str(cfg.ckpt_path)):
            raise ConfigError(f"ckpt_path={cfg.ckpt_path}: corrupted, incomplete or not a clap_train checkpoint")
        return str(cfg.ckpt_path)
    if resume_mode(cfg) == "auto":
        return newest_valid(ckpt_dir)
    return None


def resume_mode(cfg: DictConfig) -> str:
    """`resume`, except that a job SLURM requeued (SLURM_RESTART_COUNT > 0) always resumes: it runs the same
    command again, and `resume=never` there would throw away what it trained before the preemption."""
    mode = str(cfg.get("resume", "auto"))
    if mode == "never" and int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0:
        log.info("resume=never, but this job was requeued: resuming its own checkpoints")
        return "auto"
    return mode


def start_fresh(run_dir: str) -> str | None:
    """`resume=never`: move what an earlier run left in `run_dir` (checkpoints, metrics, results, plots,
    logger folders) to a sibling `<run_dir>.old-<time>`, so this run's files are its own and the next
    `resume=auto` launch continues this run. Hydra's own log folder stays (this process writes to it).
    Only the launching rank moves anything; returns the folder moved to, or None when there was nothing."""
    if not _launch_rank_is_zero():
        return None
    try:
        names = [n for n in os.listdir(run_dir) if n != "hydra"]
    except FileNotFoundError:
        return None
    if not names:
        return None
    aside = f"{run_dir}.old-{time.strftime('%Y%m%d-%H%M%S')}"
    while os.path.exists(aside):
        aside += "x"
    os.makedirs(aside)
    for n in names:
        os.rename(os.path.join(run_dir, n), os.path.join(aside, n))
    log.warning("resume=never: the earlier run's files in %s moved to %s; starting fresh", run_dir, aside)
    return aside


def _launch_rank_is_zero() -> bool:
    """Rank 0 as the launcher says, before any process group exists: every rank variable that is set
    (torchrun's RANK/LOCAL_RANK, Lightning's NODE_RANK/LOCAL_RANK for the ranks it spawns, srun's
    SLURM_PROCID) is 0. A single process sets none."""
    return all(int(os.environ.get(v, "0") or 0) == 0 for v in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def prepare_resume(cfg: DictConfig, run_dir: str, model, is_global_zero: bool) -> tuple[str | None, int, int]:
    """The checkpoint to resume from (or None), its step and its completed epochs, after checking it fits
    `model`; metrics.csv rows the interrupted run logged after it are dropped (the resumed run logs those
    steps again)."""
    path = find_resume(cfg, os.path.join(run_dir, "checkpoints"))
    if not path:
        return None, 0, 0
    log.info("resuming from %s", path)
    # find_resume chose it with is_valid, which checked its digest: not hashed a second time
    ck = read_checkpoint(path, mmap=True, trust=bool(cfg.get("trust_checkpoint")), verify=False)
    try:
        check_compatible(ck, model, path)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if is_global_zero:
        _drop_logged_after(run_dir, ck)
    epochs = (((ck.get("loops") or {}).get("fit_loop") or {}).get("epoch_progress") or {}).get("current", {})
    return path, int(ck.get("global_step", 0)), int(epochs.get("completed", ck.get("epoch", 0)) or 0)


def check_not_past_end(cfg: DictConfig, path: str, step: int, epochs: int) -> None:
    """A checkpoint from beyond this config's last epoch cannot continue (Lightning refuses it with a
    traceback deep in fit): say so at start-up, with the fix."""
    max_epochs = cfg.trainer.get("max_epochs")
    if max_epochs is not None and max_epochs != -1 and epochs > max_epochs:
        raise ConfigError(
            f"trainer.max_epochs={max_epochs}: {path} is at step {step} after {epochs} completed epochs, past "
            "this config's end; raise trainer.max_epochs to train on from it (or use init_from= to start a new "
            "schedule from its weights)"
        )


def finished_results(cfg: DictConfig, run_dir: str, step: int, target: int | None) -> dict | None:
    """A re-launch of a run that already finished: the results.json it wrote at the resumed step, when the
    config asks for no more steps (resuming would only test again and overwrite it). None otherwise."""
    path = os.path.join(run_dir, "results.json")
    if cfg.get("ckpt_path") or target is None or step < target or not os.path.exists(path):
        return None
    import json

    with open(path) as f:
        results = json.load(f)
    return results if int(results.get("global_step", -1)) == step else None


def _drop_logged_after(run_dir: str, ck: dict) -> None:
    from clap_train.loggers import drop_rows_from_step

    step = int(ck.get("global_step", 0))
    n = drop_rows_from_step(os.path.join(run_dir, "csv", "metrics.csv"), step, ck.get("pending_log_row"))
    if n:
        log.info("dropped %d metrics.csv rows logged after step %d by the interrupted run", n, step)

"""Compose a run from a Hydra config: data, model, trainer, loggers, callbacks; fit, test, report."""

from __future__ import annotations

import json
import logging
import os
import time
import warnings

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from clap_train.callbacks import resolve_monitor
from clap_train.checkpoints.files import is_valid, newest_valid
from clap_train.checkpoints.io import AtomicCheckpointIO
from clap_train.checkpoints.load import check_compatible, init_weights, read_checkpoint
from clap_train.config import ConfigError
from clap_train.config import instantiate as build  # a ConfigError from a constructor stays one line
from clap_train.data.datamodule import ClapDataModule
from clap_train.data.synthetic import SyntheticSpec, ensure_synthetic
from clap_train.lit import ClapLit
from clap_train.preemption import Preemption
from clap_train.report import format_report
from clap_train.secrets import redact

log = logging.getLogger("clap_train")

# Warnings that do not apply to this design: our IterableDataset gives every worker its own slot and
# length, and with manual optimisation the checkpoint is taken after the step on purpose.
for _msg in (
    ".*`IterableDataset` has `__len__` defined.*",
    ".*ModelCheckpoint with manual optimization.*",
    ".*isinstance\\(treespec, LeafSpec\\)` is deprecated.*",
    ".*module\\(s\\) in eval mode at the start of training.*",
):  # frozen stages stay in eval on purpose
    warnings.filterwarnings("ignore", message=_msg)


def plain(node) -> dict:
    return OmegaConf.to_container(node, resolve=True) if node is not None else {}


def find_resume(cfg: DictConfig, ckpt_dir: str) -> str | None:
    """`ckpt_path` wins; otherwise `resume=auto` picks this run dir's last.ckpt (a requeued job resumes)."""
    if cfg.get("ckpt_path"):
        if not os.path.exists(cfg.ckpt_path):
            raise ConfigError(f"ckpt_path={cfg.ckpt_path}: file not found")
        if not is_valid(str(cfg.ckpt_path)):
            raise ConfigError(f"ckpt_path={cfg.ckpt_path}: corrupted, incomplete or not a clap_train checkpoint")
        return str(cfg.ckpt_path)
    if cfg.get("resume", "auto") == "auto":
        return newest_valid(ckpt_dir)
    return None


def build_trainer(cfg: DictConfig, run_dir: str, callbacks: list, loggers: list) -> L.Trainer:
    tcfg = plain(cfg.trainer)
    plugins = [AtomicCheckpointIO()]
    if "SLURM_JOB_ID" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        from lightning.pytorch.plugins.environments import SLURMEnvironment

        plugins.append(SLURMEnvironment(auto_requeue=False))  # our handler owns the signal
    return build(tcfg, callbacks=callbacks, logger=loggers or False, plugins=plugins, default_root_dir=run_dir)


def run(cfg: DictConfig) -> dict:
    t0 = time.time()
    torch.set_float32_matmul_precision("high")
    L.seed_everything(cfg.seed, workers=True)
    missing = [k for k in (cfg.get("require") or []) if OmegaConf.select(cfg, k) in (None, "")]
    if missing:
        raise ConfigError(f"this configuration needs {', '.join(missing)} set (e.g. {missing[0]}=...)")
    run_dir = os.path.abspath(cfg.paths.run_dir)
    os.makedirs(run_dir, exist_ok=True)
    if cfg.get("synthetic") and cfg.synthetic.get("enabled", True):
        spec = {k: v for k, v in plain(cfg.synthetic).items() if k != "enabled"}
        ensure_synthetic(SyntheticSpec(**spec), log=log.info)

    dm: ClapDataModule = build(cfg.data)
    optim = plain(cfg.optim)
    if not optim.get("total_steps"):
        max_steps = int(cfg.trainer.get("max_steps") or -1)
        optim["total_steps"] = (
            max_steps if max_steps > 0 else int(cfg.trainer.max_epochs) * dm.resolve_steps_per_epoch()
        )
    timeout = (cfg.get("distributed") or {}).get("timeout_s", 1200)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise ConfigError(f"distributed.timeout_s={timeout!r}: must be a number of seconds > 0")
    lit = ClapLit(
        plain(cfg.model),
        optim=optim,
        loss=plain(cfg.loss),
        eval=plain(cfg.eval),
        compile=plain(cfg.get("compile")),
        collective_timeout_s=timeout,
    )
    if cfg.get("init_from"):
        try:
            init_weights(lit.model, cfg.init_from, log=log.info, trust=bool(cfg.get("trust_checkpoint")))
        except (ValueError, FileNotFoundError, RuntimeError) as e:
            raise ConfigError(f"init_from: {e}") from None
    dm.bind(lit.model.tokenizer)
    if dm.audio.sample_rate != lit.model.sample_rate:
        raise ConfigError(
            f"data.audio.sample_rate={dm.audio.sample_rate} but the model runs at {lit.model.sample_rate} Hz"
        )

    ckpt_dir = os.path.join(run_dir, "checkpoints")
    named = {name: build(c) for name, c in (cfg.get("callbacks") or {}).items() if c}
    val_sources = {s.name: s.name in dm.zeroshot for s in dm.eval_specs("val")}
    callbacks = [cb for name, cb in named.items() if resolve_monitor(cb, name, val_sources)]
    bench = plain(cfg.get("benchmark"))
    if bench.get("suite"):
        from clap_train.benchmark.callback import Benchmark

        callbacks.append(Benchmark(**bench))
    loggers = [build(c) for c in (cfg.get("logger") or {}).values() if c]
    trainer = build_trainer(cfg, run_dir, callbacks, loggers)
    world, k = trainer.world_size, int(cfg.optim.accumulate)
    if k > 1 and type(trainer.strategy).__name__.startswith("DeepSpeed"):
        raise ConfigError(
            "optim.accumulate>1 (contrastive accumulation) needs one backward per micro-batch, "
            "which DeepSpeed's engine does not allow; use trainer=fsdp or trainer=ddp"
        )
    if dm.batch_size % (world * k):
        raise ConfigError(
            f"data.batch_size={dm.batch_size} (global) must divide by world size {world} x optim.accumulate={k}"
        )
    with open(os.path.join(run_dir, "config.yaml"), "w") as f:  # resolved, with secrets masked
        f.write(OmegaConf.to_yaml(OmegaConf.create(redact(plain(cfg)))))

    resume = find_resume(cfg, ckpt_dir)
    if resume:
        log.info("resuming from %s", resume)
        ck = read_checkpoint(resume, mmap=True, trust=bool(cfg.get("trust_checkpoint")))
        try:
            check_compatible(ck, lit.model, resume)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if trainer.is_global_zero:
            _drop_logged_after(run_dir, ck)
    trainer.fit(lit, datamodule=dm, ckpt_path=resume)
    fit_s = time.time() - t0
    preempted = next(
        (cb.stopped_at for cb in callbacks if isinstance(cb, Preemption) and cb.stopped_at is not None), None
    )
    if preempted is not None:  # the requeued job resumes from the checkpoint just written
        log.warning("stopped at step %d by a preemption signal; not testing", preempted)
        return {"run_dir": run_dir, "preempted_at": preempted, "global_step": trainer.global_step}

    results = {
        "run_dir": run_dir,
        "fit_seconds": fit_s,
        "global_step": trainer.global_step,
        "val": lit.last_eval.get("val", {}),
    }
    best = _best_checkpoint(trainer)
    results["checkpoint"] = best or os.path.join(ckpt_dir, "last.ckpt")
    if cfg.get("test_after_fit", True) and dm.cfg_test:
        kw = {"ckpt_path": best, "weights_only": True} if best else {}
        trainer.test(lit, datamodule=dm, verbose=False, **kw)
        results["test"] = lit.last_eval.get("test", {})
    plots = os.path.join(run_dir, "plots")
    results["plots"] = (
        sorted(os.path.join(plots, f) for f in os.listdir(plots) if f.endswith(".png")) if os.path.isdir(plots) else []
    )
    results["wall_seconds"] = time.time() - t0
    results["chance"] = {k: v for k, v in results.get("test", {}).items() if k.endswith("zeroshot_chance")}
    if trainer.is_global_zero:
        with open(os.path.join(run_dir, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
        print(format_report(results))
    return results


def _drop_logged_after(run_dir: str, ck: dict) -> None:
    """metrics.csv rows of steps after the checkpoint are about to be logged again by the resumed run."""
    from clap_train.loggers import drop_rows_from_step

    step = int(ck.get("global_step", 0))
    n = drop_rows_from_step(os.path.join(run_dir, "csv", "metrics.csv"), step, ck.get("pending_log_row"))
    if n:
        log.info("dropped %d metrics.csv rows logged after step %d by the interrupted run", n, step)


def _best_checkpoint(trainer: L.Trainer) -> str | None:
    for cb in trainer.checkpoint_callbacks:
        if getattr(cb, "monitor", None) and cb.best_model_path:
            return cb.best_model_path
    return None

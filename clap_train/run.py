"""One run from a Hydra config: validate, build, fit, test, summarise.

checked = validate(cfg)            every typed block, one line per mistake (clap_train/schema.py)
dm, lit = data, model              each constructor checks its own values
dm.prepare_data()                  the synthetic set written once, before the start-up checks need it
trainer = callbacks, loggers       (clap_train/callbacks.py, loggers.py, strategies.py)
fit(resume=...)                    from the checkpoint clap_train/resume.py finds
test on the best checkpoint, results.json and the report table
"""

from __future__ import annotations

import json
import logging
import os
import time

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from clap_train.callbacks import resolve_monitor
from clap_train.checkpoints.io import AtomicCheckpointIO
from clap_train.checkpoints.load import init_weights
from clap_train.config import ConfigError, micro_batch
from clap_train.config import instantiate as build  # a ConfigError from a constructor stays one line
from clap_train.console import quiet_console
from clap_train.data.datamodule import ClapDataModule
from clap_train.lit import ClapLit
from clap_train.preemption import Preemption
from clap_train.report import format_report
from clap_train.resume import check_not_past_end, finished_results, prepare_resume, resume_mode, start_fresh
from clap_train.schema import Checked, validate
from clap_train.secrets import redact

log = logging.getLogger("clap_train")

quiet_console()


def plain(node) -> dict:
    return OmegaConf.to_container(node, resolve=True) if node is not None else {}


def run(cfg: DictConfig) -> dict:
    t0 = time.time()
    checked = validate(cfg)
    torch.set_float32_matmul_precision("high")
    run_dir = os.path.abspath(cfg.paths.run_dir)
    if resume_mode(cfg) == "never":
        start_fresh(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    dm, lit = build_data_and_model(cfg, checked)
    dm.prepare_data()
    callbacks = build_callbacks(cfg, dm)
    trainer = build_trainer(cfg, run_dir, callbacks, [build(c) for c in (cfg.get("logger") or {}).values() if c])
    check_batch_split(trainer, dm.batch_size, checked.optim.accumulate)
    with open(os.path.join(run_dir, "config.yaml"), "w") as f:  # resolved, with secrets masked
        f.write(OmegaConf.to_yaml(OmegaConf.create(redact(plain(cfg)))))

    resume, step, epochs = prepare_resume(cfg, run_dir, lit.model, trainer.is_global_zero)
    done = finished_results(cfg, run_dir, step, target_steps(trainer, dm)) if resume else None
    if done is not None:
        log.info(
            "this run finished at step %d (results: %s); nothing to do. To train on, raise trainer.max_epochs or "
            "trainer.max_steps; to start over, resume=never",
            step,
            os.path.join(run_dir, "results.json"),
        )
        return done
    if resume:
        check_not_past_end(cfg, resume, step, epochs)
    trainer.fit(lit, datamodule=dm, ckpt_path=resume)
    preempted = next(
        (cb.stopped_at for cb in callbacks if isinstance(cb, Preemption) and cb.stopped_at is not None), None
    )
    if preempted is not None:  # the requeued job resumes from the checkpoint just written
        log.warning("stopped at step %d by a preemption signal; not testing", preempted)
        return {"run_dir": run_dir, "preempted_at": preempted, "global_step": trainer.global_step}
    results = {
        "run_dir": run_dir,
        "fit_seconds": time.time() - t0,
        "global_step": trainer.global_step,
        "val": lit.last_eval.get("val", {}),
    }
    best = _best_checkpoint(trainer)
    results["checkpoint"] = best or os.path.join(run_dir, "checkpoints", "last.ckpt")
    if cfg.get("test_after_fit", True) and dm.cfg_test:
        kw = {"ckpt_path": best, "weights_only": True} if best else {}
        trainer.test(lit, datamodule=dm, verbose=False, **kw)
        results["test"] = lit.last_eval.get("test", {})
    return summarise(results, run_dir, t0, trainer.is_global_zero)


def build_data_and_model(cfg: DictConfig, checked: Checked) -> tuple[ClapDataModule, ClapLit]:
    dm: ClapDataModule = build(cfg.data)  # checks its values; draws no random numbers
    imported = _read_init_from(cfg)
    assets = imported.text_assets if imported else None
    if assets is not None:  # a Hugging Face folder or our checkpoint: no hub, no second copy of the tower
        log.info(
            "text tower: config and tokenizer from init_from=%s (not text_encoder.name_or_path=%s)",
            cfg.init_from,
            cfg.model.text_encoder.get("name_or_path"),
        )
    L.seed_everything(cfg.seed, workers=True)  # before the model's initial weights
    lit = ClapLit(
        plain(cfg.model),
        optim=checked.optim,
        loss=checked.loss,
        eval=checked.eval,
        compile=checked.compile,
        collective_timeout_s=checked.distributed.timeout_s,
        text_assets=assets,
    )
    if imported:
        try:
            strict = bool(cfg.get("init_from_strict", True))
            init_weights(lit.model, cfg.init_from, log=log.info, strict=strict, imported=imported)
        except (ValueError, FileNotFoundError, RuntimeError) as e:
            raise ConfigError(f"init_from: {e}") from None
    dm.bind(lit.model.tokenizer)
    if dm.audio.sample_rate != lit.model.sample_rate:
        raise ConfigError(
            f"data.audio.sample_rate={dm.audio.sample_rate} but the model runs at {lit.model.sample_rate} Hz"
        )
    return dm, lit


def _read_init_from(cfg: DictConfig):
    """The weights `init_from` names, read before the towers are built (it may carry the text tower)."""
    if not cfg.get("init_from"):
        return None
    from clap_train.checkpoints.load import read_weights

    try:
        return read_weights(str(cfg.init_from), trust=bool(cfg.get("trust_checkpoint")))
    except (ValueError, FileNotFoundError, RuntimeError, OSError) as e:
        raise ConfigError(
            f"init_from: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}"
        ) from None


def build_callbacks(cfg: DictConfig, dm: ClapDataModule) -> list:
    named = {name: build(c) for name, c in (cfg.get("callbacks") or {}).items() if c}
    val_sources = {s.name: s.name in dm.zeroshot for s in dm.eval_specs("val")}
    callbacks = [cb for name, cb in named.items() if resolve_monitor(cb, name, val_sources)]
    bench = plain(cfg.get("benchmark"))
    if bench.get("suite"):
        from clap_train.benchmark.callback import Benchmark

        callbacks.append(Benchmark(**bench))
    return callbacks


def build_trainer(cfg: DictConfig, run_dir: str, callbacks: list, loggers: list) -> L.Trainer:
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator}: no CUDA device is visible to torch {torch.__version__} "
            "(torch.cuda.is_available() is False); use trainer=cpu, or check the driver and CUDA_VISIBLE_DEVICES"
        )
    plugins = [AtomicCheckpointIO()]
    if "SLURM_JOB_ID" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive"):
        from lightning.pytorch.plugins.environments import SLURMEnvironment

        plugins.append(SLURMEnvironment(auto_requeue=False))  # our handler owns the signal
    return build(
        plain(cfg.trainer), callbacks=callbacks, logger=loggers or False, plugins=plugins, default_root_dir=run_dir
    )


def target_steps(trainer: L.Trainer, dm: ClapDataModule) -> int | None:
    """The step the configured run ends at (the first of max_steps and max_epochs), or None if unbounded."""
    ends = [trainer.max_steps] if trainer.max_steps and trainer.max_steps > 0 else []
    if trainer.max_epochs and trainer.max_epochs > 0:
        ends.append(trainer.max_epochs * dm.resolve_steps_per_epoch())
    return min(ends) if ends else None


def check_batch_split(trainer: L.Trainer, batch_size: int, k: int) -> None:
    """At start-up: the global batch splits into world x accumulate equal micro-batches."""
    if k > 1 and type(trainer.strategy).__name__.startswith("DeepSpeed"):
        raise ConfigError(
            "optim.accumulate>1 (contrastive accumulation) needs one backward per micro-batch, "
            "which DeepSpeed's engine does not allow; use trainer=fsdp or trainer=ddp"
        )
    micro_batch(batch_size, trainer.world_size, k)


def summarise(results: dict, run_dir: str, t0: float, is_global_zero: bool) -> dict:
    plots = os.path.join(run_dir, "plots")
    results["plots"] = (
        sorted(os.path.join(plots, f) for f in os.listdir(plots) if f.endswith(".png")) if os.path.isdir(plots) else []
    )
    results["wall_seconds"] = time.time() - t0
    results["chance"] = {k: v for k, v in results.get("test", {}).items() if k.endswith("zeroshot_chance")}
    if is_global_zero:
        with open(os.path.join(run_dir, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
        print(format_report(results))
    return results


def _best_checkpoint(trainer: L.Trainer) -> str | None:
    for cb in trainer.checkpoint_callbacks:
        if getattr(cb, "monitor", None) and cb.best_model_path:
            return cb.best_model_path
    return None

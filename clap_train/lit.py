"""The LightningModule: only Lightning's hooks. What they call lives beside it: the optimiser and
schedule in optim.py, the contrastive step (GradCache, the agreed finite check) in step.py, evaluation
in eval/accumulate.py, sharding in strategies.py, compilation in compile.py.

Manual optimisation because contrastive accumulation (negatives across micro-batches) must see every
micro-batch's features before any backward; Lightning's `accumulate_grad_batches` cannot do that.
One loader batch is one optimiser step: the per-rank batch is split into `optim.accumulate`
micro-batches inside `training_step`.
"""

from __future__ import annotations

import os
import random
from contextlib import nullcontext

import lightning as L
import torch
import torch.nn.functional as F

from clap_train import watchdog
from clap_train.compile import CompileConfig, compile_towers
from clap_train.config import build
from clap_train.distributed import gather_objects, world_info
from clap_train.eval.accumulate import EvalAccumulator
from clap_train.eval.metrics import EvalConfig
from clap_train.flops import flop_counter
from clap_train.loss import ContrastiveLoss, LossConfig
from clap_train.model import CLAP, build_model
from clap_train.optim import OptimConfig, build_optimizer, build_scheduler
from clap_train.rng import set_torch_rng_state, torch_rng_state
from clap_train.secrets import redact
from clap_train.step import agreed_step, contrastive_backward, deepspeed_step, fsdp_no_sync


def _typed(cls, value, key: str):
    return value if isinstance(value, cls) else build(cls, value, key)


class ClapLit(L.LightningModule):
    def __init__(
        self,
        model_cfg: dict,
        optim: OptimConfig | dict | None = None,
        loss: LossConfig | dict | None = None,
        eval: EvalConfig | dict | None = None,
        text_assets: dict | None = None,
        compile: CompileConfig | dict | None = None,
        collective_timeout_s: float = 1200.0,
    ):
        super().__init__()
        self.automatic_optimization = False
        self.optim_cfg: OptimConfig = _typed(OptimConfig, optim, "optim")
        self.eval_cfg: EvalConfig = _typed(EvalConfig, eval, "eval")
        loss_cfg = _typed(LossConfig, loss, "loss")
        # plain containers only: our checkpoints load with torch.load(weights_only=True)
        # secrets masked: hyperparameters go into checkpoints and to every logger
        self.save_hyperparameters(
            redact(
                {
                    "model_cfg": model_cfg,
                    "optim": vars(self.optim_cfg),
                    "loss": vars(loss_cfg),
                    "eval": vars(self.eval_cfg),
                }
            )
        )
        self.model: CLAP = build_model(model_cfg, text_assets)
        compile_towers(self.model, compile or {})
        self.loss_fn = ContrastiveLoss(loss_cfg.local_loss, loss_cfg.gather_with_grad)
        self.collective_timeout_s = float(collective_timeout_s)
        self.nonfinite_in_a_row = 0
        self.flops_per_step: float | None = None
        # callbacks that must decide together at a step (preemption stop, time-based checkpoint) register a
        # vote here; on several ranks the votes ride in the step's finite-check all-reduce (any rank's yes
        # wins) and the answers are left in `agreed` for the step's end
        self.step_votes: dict = {}
        self.agreed: dict = {}
        self.evals = EvalAccumulator()
        self.last_eval: dict[str, dict[str, float]] = {}
        # the last evaluation's embeddings per stage and source (what the pictures are drawn from)
        self.eval_arrays: dict[str, dict[str, dict]] = {}

    # --- sharding -------------------------------------------------------------------------------------
    def configure_model(self) -> None:
        """Under `trainer=fsdp` (a ModelParallelStrategy) shard the model with FSDP2 before the optimiser
        is built; called again before `trainer.test`, when it is already sharded."""
        from torch.distributed.fsdp import FSDPModule

        mesh = getattr(self, "_device_mesh", None)
        if mesh is None or any(isinstance(m, FSDPModule) for m in self.model.modules()):
            return
        from clap_train.strategies import shard_model

        shard_model(self.model, mesh["data_parallel"], getattr(self.trainer.strategy, "reshard_after_forward", True))

    def _sharded(self) -> bool:
        return getattr(self, "_device_mesh", None) is not None

    def configure_optimizers(self):
        opt = build_optimizer(self.model, self.optim_cfg, self.device)
        sched = build_scheduler(opt, self.optim_cfg, self._total_steps())
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _total_steps(self) -> int:
        """The schedule's length: optim.total_steps, else trainer.max_steps, else max_epochs x the data's
        steps per epoch (from the config and sizes.json: `trainer.estimated_stepping_batches` would build
        the train loader before a resumed loader state is restored)."""
        t = self._trainer
        if self.optim_cfg.total_steps or t is None:
            return int(self.optim_cfg.total_steps or 1)
        if t.max_steps and t.max_steps > 0:
            return int(t.max_steps)
        return int(t.max_epochs) * t.datamodule.resolve_steps_per_epoch()

    # --- where each rank is, for the collective watchdog ----------------------------------------------
    def setup(self, stage: str) -> None:
        if watchdog.start(self.collective_timeout_s) is not None:
            watchdog.watch_strategy(self.trainer.strategy)
        ds = self._deepspeed_config()
        if ds is not None:  # read by the strategy when it builds the engine, after this hook
            # DeepSpeed clips inside its step (p.grad is empty under ZeRO), with the same global norm as ours
            ds["gradient_clipping"] = float(self.optim_cfg.clip_grad or 0.0)
            if str(self.trainer.precision).startswith("bf16"):
                # skip non-finite steps in bf16 too (DeepSpeed checks fp16 and fp32 only by default)
                ds.setdefault("bf16", {"enabled": True})["check_grad_overflow"] = True
            # Lightning would read `train_dataloader.batch_sampler.batch_size`; our loader batches itself
            per_rank = getattr(getattr(self.trainer, "datamodule", None), "per_rank_batch", None)
            ds.setdefault("train_micro_batch_size_per_gpu", per_rank(self.trainer.world_size) if per_rank else 1)

    def _deepspeed_config(self) -> dict | None:
        cfg = getattr(getattr(getattr(self, "_trainer", None), "strategy", None), "config", None)
        return cfg if isinstance(cfg, dict) and "zero_optimization" in cfg else None

    def teardown(self, stage: str) -> None:
        watchdog.mark(f"end of {stage}")

    def on_validation_start(self):
        watchdog.mark(f"validation at step {self.global_step}")
        self._full_weights_for_eval(True)

    def on_validation_end(self):
        self._full_weights_for_eval(False)

    def on_test_start(self):
        watchdog.mark("test")
        self._full_weights_for_eval(True)

    def on_test_end(self):
        self._full_weights_for_eval(False)

    def _full_weights_for_eval(self, on: bool) -> None:
        """Under FSDP2 every forward is a collective, but eval sets split unevenly across ranks: evaluation
        runs on gathered full weights (no gradients or optimiser state alongside), so no eval forward
        communicates, then the weights are sharded again."""
        if not self._sharded():
            return
        from torch.distributed.fsdp import FSDPModule

        keep = getattr(self.trainer.strategy, "reshard_after_forward", True)
        for m in self.model.modules():
            if isinstance(m, FSDPModule):
                m.set_reshard_after_forward(keep if not on else False, recurse=False)
                m.unshard() if on else m.reshard()

    # --- training ------------------------------------------------------------------------------------
    def _no_grad_sync(self):
        if self._sharded():
            return fsdp_no_sync(self.model)
        # DDP's; one device (SingleDeviceStrategy) has no gradient sync to hold back
        block = getattr(getattr(getattr(self, "_trainer", None), "strategy", None), "block_backward_sync", None)
        return block() if block is not None else nullcontext()

    def _loss_and_backward(self, batch: dict) -> torch.Tensor:
        return contrastive_backward(
            self.model, self.loss_fn, batch, self.optim_cfg.accumulate, self.manual_backward, self._no_grad_sync
        )

    def training_step(self, batch: dict, batch_idx: int):
        opt, sched = self.optimizers(), self.lr_schedulers()
        opt.zero_grad(set_to_none=True)
        count = self.flops_per_step is None
        what = f"step {self.global_step}'s forward and backward (feature gathers, gradient reduction)"
        with flop_counter() if count else nullcontext() as fc, watchdog.watch(what):
            loss = self._loss_and_backward(batch)
        if count:
            self.flops_per_step = float(fc.get_total_flops()) if fc is not None else 0.0
        if self._deepspeed_config() is not None:
            ok, gnorm = deepspeed_step(self, opt, sched)
        else:
            ok, gnorm = agreed_step(self, opt, sched, loss, self._sharded())
        self._count_nonfinite(ok)
        bs = batch["audio"].shape[0]
        # not prog_bar: Lightning converts progress-bar values to numbers after every batch (a host sync each
        # step); callbacks.ProgressBar reads `last_loss` only when it redraws
        self.last_loss = loss
        self.log("train/loss", loss, batch_size=bs)
        self.log("train/grad_norm", gnorm, batch_size=bs)
        self.log("train/lr", sched.get_last_lr()[0], batch_size=bs)
        self.log("train/logit_scale", self.model.logit_scale().detach(), batch_size=bs)
        return loss

    def _count_nonfinite(self, ok: bool) -> None:
        if ok:
            self.nonfinite_in_a_row = 0
            return
        self.nonfinite_in_a_row += 1
        self.log("train/skipped_nonfinite", float(self.nonfinite_in_a_row))
        if self.nonfinite_in_a_row >= self.optim_cfg.max_nonfinite:
            # the skipped steps changed nothing: the weights now are the last good state
            path = os.path.join(self.trainer.default_root_dir, "checkpoints", "nonfinite-stop.ckpt")
            self.trainer.save_checkpoint(path)
            raise RuntimeError(
                f"{self.nonfinite_in_a_row} optimiser steps in a row had a non-finite loss or "
                f"gradient; stopping. The last good state is in {path} "
                "(lower optim.lr, or check the data)"
            )

    # --- evaluation ----------------------------------------------------------------------------------
    def _eval_step(self, batch: dict) -> None:
        a = F.normalize(self.model.audio_features(batch["audio"], batch["audio_len"]), dim=-1).float().cpu()
        t = F.normalize(self.model.text_features(batch["text"]), dim=-1).float().cpu()
        self.evals.add(
            batch["source"][0], batch["key"], a, t, batch["caption_owner"].cpu(), batch["tags"], batch["captions"]
        )

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self._eval_step(batch)

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        self._eval_step(batch)

    def on_validation_epoch_end(self):
        self._eval_epoch_end("val")

    def on_test_epoch_end(self):
        self._eval_epoch_end("test")

    def class_embeddings(self, classes: list[str]) -> torch.Tensor:
        """Prompt-ensemble text embedding per class (templates averaged, then re-normalised)."""
        return self.model.class_embeddings(classes, self.eval_cfg.templates).float().cpu()

    def _eval_epoch_end(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        # every source the loaders had, not only those this rank saw batches of: the gather is a collective,
        # and a rank whose share of a small eval set is empty must still take part
        sources = list((getattr(dm, "eval_sources", {}) or {}).get(stage, []))
        results, self.eval_arrays[stage] = self.evals.finish(
            sources, self.model.embed_dim, getattr(dm, "zeroshot", {}) or {}, self.class_embeddings, stage
        )
        for src, m in results.items():
            for k, v in m.items():
                self.log(f"{stage}/{src}/{k}", v, add_dataloader_idx=False, sync_dist=False, rank_zero_only=False)
        self.last_eval[stage] = {f"{stage}/{s}/{k}": v for s, m in results.items() for k, v in m.items()}

    # --- checkpoints ---------------------------------------------------------------------------------
    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        # 0-d temperatures in files, 1-element parameters under DeepSpeed (strategies.one_element_scalars)
        own = {k: p.shape for k, p in self.named_parameters()}
        fit = {
            k: v.reshape(own[k]) if k in own and v.shape != own[k] and v.numel() == 1 == own[k].numel() else v
            for k, v in state_dict.items()
        }
        return super().load_state_dict(fit, strict=strict, assign=assign)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # the tokenizer and text config travel with the weights: load_model needs no files or network
        checkpoint["text_assets"] = self.model.text_branch.assets()
        checkpoint["nonfinite_in_a_row"] = self.nonfinite_in_a_row
        checkpoint["metrics"] = {k: dict(v) for k, v in self.last_eval.items()}  # per source and mean
        # RNG states as tensors and tuples of ints: weights_only-safe. Dropout and SpecAugment replay
        # exactly after a resume (the data pipeline seeds itself from positions, not from these).
        # Every rank's: dropout draws as many numbers as its tensors have elements, and text batches are
        # padded per rank, so the ranks' generators drift apart and each needs its own back.
        ranks = gather_objects({**torch_rng_state(), "python": random.getstate()}, "the RNG states")
        checkpoint["rng"], checkpoint["rng_per_rank"] = ranks[0], ranks

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.nonfinite_in_a_row = int(checkpoint.get("nonfinite_in_a_row", 0))
        per_rank = checkpoint.get("rng_per_rank") or []
        rank, world = world_info()
        self._pending_rng = per_rank[rank] if len(per_rank) == world else checkpoint.get("rng")

    def on_train_batch_start(self, batch, batch_idx):
        watchdog.mark(f"training step {self.global_step}")
        # restored at the first step, after everything else that runs at start-up has drawn numbers
        rng = getattr(self, "_pending_rng", None)
        if rng is not None:
            set_torch_rng_state(rng)
            random.setstate(rng["python"])
            self._pending_rng = None

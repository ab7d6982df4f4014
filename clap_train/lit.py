"""The LightningModule: only Lightning's hooks. What they call lives beside it: the optimiser and
schedule in optim.py, the contrastive step (GradCache, the agreed finite check) in step.py, evaluation
in eval/accumulate.py, sharding in strategies.py, compilation in compile.py.

Manual optimisation because contrastive accumulation (negatives across micro-batches) must see every
micro-batch's features before any backward; Lightning's `accumulate_grad_batches` cannot do that.
One loader batch is one optimiser step: the per-rank batch is split into `optim.accumulate`
micro-batches inside `training_step`.
"""

from __future__ import annotations

from contextlib import nullcontext

import lightning as L
import torch

from clap_train import watchdog
from clap_train.compile import CompileConfig, compile_towers
from clap_train.config import build
from clap_train.distributed import world_info
from clap_train.eval.accumulate import EvalAccumulator
from clap_train.eval.metrics import EvalConfig
from clap_train.flops import flop_counter
from clap_train.loss import ContrastiveLoss, LossConfig
from clap_train.model import CLAP, build_model
from clap_train.optim import OptimConfig, build_optimizer, build_scheduler, total_steps
from clap_train.rng import gather_rng_states, own_rng_state, restore_rng_state
from clap_train.secrets import redact
from clap_train.step import (
    agreed_step,
    contrastive_backward,
    count_nonfinite,
    deepspeed_step,
    grad_sync_blocker,
    log_step,
)
from clap_train.strategies import (
    deepspeed_config,
    fill_deepspeed_config,
    fit_scalar_shapes,
    full_weights_for_eval,
    shard_model,
)


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
        hparams = {"model_cfg": model_cfg, "optim": vars(self.optim_cfg), "loss": vars(loss_cfg)}
        self.save_hyperparameters(redact({**hparams, "eval": vars(self.eval_cfg)}))
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

    # --- sharding, strategies and the collective watchdog -----------------------------------------------
    def configure_model(self) -> None:
        """Under `trainer=fsdp` (a ModelParallelStrategy) shard the model with FSDP2 before the optimiser is
        built; called again before `trainer.test`, when it is already sharded (shard_model returns)."""
        if self._sharded():
            shard_model(self.model, self._device_mesh["data_parallel"], self._reshard_after_forward())

    def _sharded(self) -> bool:
        return getattr(self, "_device_mesh", None) is not None

    def _reshard_after_forward(self) -> bool:
        return getattr(self.trainer.strategy, "reshard_after_forward", True)

    def configure_optimizers(self):
        opt = build_optimizer(self.model, self.optim_cfg, self.device)
        sched = build_scheduler(opt, self.optim_cfg, total_steps(self.optim_cfg, self._trainer))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def setup(self, stage: str) -> None:
        if watchdog.start(self.collective_timeout_s) is not None:
            watchdog.watch_strategy(self.trainer.strategy)
        ds = deepspeed_config(self.trainer)
        if ds is not None:  # read by the strategy when it builds the engine, after this hook
            dm = getattr(self.trainer, "datamodule", None)
            micro = dm.per_rank_batch(self.trainer.world_size) if hasattr(dm, "per_rank_batch") else 1
            fill_deepspeed_config(ds, self.optim_cfg.clip_grad, str(self.trainer.precision), micro)

    def teardown(self, stage: str) -> None:
        watchdog.mark(f"end of {stage}")

    def on_validation_start(self):
        self._eval_weights(f"validation at step {self.global_step}")

    def on_test_start(self):
        self._eval_weights("test")

    def on_validation_end(self):
        self._eval_weights(None)

    def on_test_end(self):
        self._eval_weights(None)

    def _eval_weights(self, what: str | None) -> None:
        """Evaluation (`what`) starts with full weights under FSDP2; at its end (None) they are sharded again."""
        if what is not None:
            watchdog.mark(what)
        if self._sharded():
            full_weights_for_eval(self.model, what is not None, self._reshard_after_forward())

    # --- training ------------------------------------------------------------------------------------
    def _no_grad_sync(self):
        strategy = getattr(getattr(self, "_trainer", None), "strategy", None)
        return grad_sync_blocker(self.model, strategy, self._sharded())

    def _loss_and_backward(self, batch: dict) -> torch.Tensor:
        return contrastive_backward(
            self.model, self.loss_fn, batch, self.optim_cfg.accumulate, self.manual_backward, self._no_grad_sync
        )

    def training_step(self, batch: dict, batch_idx: int):
        """The training step's stages, in order, and why that order."""
        opt, sched = self.optimizers(), self.lr_schedulers()
        # 1. gradients cleared first: a skipped step (below) must not leak into the next
        opt.zero_grad(set_to_none=True)
        # 2. forward and backward of the whole batch's loss (GradCache over micro-batches), under the
        #    collective watchdog (it holds feature gathers and gradient reductions); the FLOPs counted once
        count = self.flops_per_step is None
        what = f"step {self.global_step}'s forward and backward (feature gathers, gradient reduction)"
        with flop_counter() if count else nullcontext() as fc, watchdog.watch(what):
            loss = self._loss_and_backward(batch)
        if count:
            self.flops_per_step = float(fc.get_total_flops()) if fc is not None else 0.0
        # 3. one gradient norm, a finite check all ranks agree on, then clip + optimiser + schedule (or a skip
        #    for every rank alike): clipping needs the reduced gradients, the schedule follows real updates
        if deepspeed_config(self._trainer) is not None:
            ok, gnorm = deepspeed_step(self, opt, sched)
        else:
            ok, gnorm = agreed_step(self, opt, sched, loss, self._sharded())
        # 4. skips counted after the decision (a run of them stops with a checkpoint), then the logs
        count_nonfinite(self, ok)
        log_step(self, loss, gnorm, sched, batch["audio"].shape[0])
        return loss

    # --- evaluation ----------------------------------------------------------------------------------
    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        a, t, _ = self.model(batch)
        self.evals.add(batch, a, t)

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        self.validation_step(batch, batch_idx, dataloader_idx)

    def on_validation_epoch_end(self):
        self._eval_epoch_end("val")

    def on_test_epoch_end(self):
        self._eval_epoch_end("test")

    def _eval_epoch_end(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        # every source the loaders had, not only those this rank saw batches of: the gather is a collective,
        # and a rank whose share of a small eval set is empty must still take part
        sources = list((getattr(dm, "eval_sources", {}) or {}).get(stage, []))
        results, self.eval_arrays[stage] = self.evals.finish(
            sources, self.model.embed_dim, getattr(dm, "zeroshot", {}) or {}, self._class_embeddings, stage
        )
        for src, m in results.items():
            for k, v in m.items():
                self.log(f"{stage}/{src}/{k}", v, add_dataloader_idx=False, sync_dist=False, rank_zero_only=False)
        self.last_eval[stage] = {f"{stage}/{s}/{k}": v for s, m in results.items() for k, v in m.items()}

    def _class_embeddings(self, classes: list[str]) -> torch.Tensor:
        return self.model.class_embeddings(classes, self.eval_cfg.templates).float().cpu()

    # --- checkpoints ---------------------------------------------------------------------------------
    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        fit = fit_scalar_shapes(state_dict, {k: p.shape for k, p in self.named_parameters()})
        return super().load_state_dict(fit, strict=strict, assign=assign)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # the tokenizer and text config travel with the weights: load_model needs no files or network
        checkpoint["text_assets"] = self.model.text_branch.assets()
        checkpoint["nonfinite_in_a_row"] = self.nonfinite_in_a_row
        checkpoint["metrics"] = {k: dict(v) for k, v in self.last_eval.items()}  # per source and mean
        # dropout and SpecAugment replay exactly after a resume (the data pipeline seeds itself from positions)
        ranks = gather_rng_states()
        checkpoint["rng"], checkpoint["rng_per_rank"] = ranks[0], ranks

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.nonfinite_in_a_row = int(checkpoint.get("nonfinite_in_a_row", 0))
        self._pending_rng = own_rng_state(checkpoint, *world_info())

    def on_train_batch_start(self, batch, batch_idx):
        watchdog.mark(f"training step {self.global_step}")
        # restored at the first step, after everything else that runs at start-up has drawn numbers
        rng = getattr(self, "_pending_rng", None)
        if rng is not None:
            restore_rng_state(rng)
            self._pending_rng = None

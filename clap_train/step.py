"""One optimiser step of contrastive training, outside Lightning's hooks: the forward and backward (with
GradCache when the batch is split into micro-batches), then a step every rank agrees on, or a skip.

GradCache: the features of all micro-batches without graphs, one loss over all of them (so negatives span
the whole batch), then each micro-batch re-forwarded with the same RNG state (dropout, SpecAugment) and
back-propagated with its features' gradients. Only the last backward reduces gradients across ranks.
"""

from __future__ import annotations

import os
from contextlib import nullcontext

import torch

from clap_train import watchdog
from clap_train.config import micro_batch
from clap_train.grads import average_replicated_, clip_, grad_norm
from clap_train.rng import set_torch_rng_state, torch_rng_state

MICRO_KEYS = ("audio", "audio_len", "text")  # what a forward reads; keys and captions stay with the batch


def split_batch(batch: dict, k: int) -> list[dict]:
    m = micro_batch(batch["audio"].shape[0], 1, k)  # checked at start-up for the global batch (run.py)

    def cut(x, i):
        return {kk: cut(v, i) for kk, v in x.items()} if isinstance(x, dict) else x[i * m : (i + 1) * m]

    return [cut({kk: batch[kk] for kk in MICRO_KEYS}, i) for i in range(k)]


def contrastive_backward(model, loss_fn, batch: dict, k: int, backward, no_sync=nullcontext) -> torch.Tensor:
    """Gradients of the batch's contrastive loss in the parameters' .grad; returns the loss (detached).
    `backward(loss)` is the strategy's backward; `no_sync()` holds back the gradient reduction."""
    if k == 1:
        a, t, s = model(batch)
        loss = loss_fn(a, t, s)
        backward(loss)
        return loss.detach()
    micro = split_batch(batch, k)
    rng, feats = [], []
    # BatchNorm buffers restored after the no-grad pass: running statistics advance once per micro-batch
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    with torch.no_grad():
        for mb in micro:
            rng.append(torch_rng_state())
            a, t, _ = model(mb)
            feats.append((a, t))
    for n, b in model.named_buffers():
        b.copy_(buffers[n])
    A = torch.cat([f[0] for f in feats]).requires_grad_(True)
    T = torch.cat([f[1] for f in feats]).requires_grad_(True)
    loss = loss_fn(A, T, model.logit_scale())
    with no_sync():
        backward(loss)  # gives A.grad, T.grad and the temperature's gradient
    ga, gt = A.grad.split([f[0].shape[0] for f in feats]), T.grad.split([f[1].shape[0] for f in feats])
    for i, mb in enumerate(micro):
        set_torch_rng_state(rng[i])
        a, t, s = model(mb)
        last = i == len(micro) - 1
        # Under DDP the last backward must reach every trained parameter, the temperature included (a zero
        # term), or DDP would wait for its gradient.
        with nullcontext() if last else no_sync():
            backward((a * ga[i]).sum() + (t * gt[i]).sum() + (s * 0.0 if last else 0.0))
    return loss.detach()


class fsdp_no_sync:
    """FSDP2's `no_sync`: micro-batches before the last accumulate unreduced gradients."""

    def __init__(self, model):
        from torch.distributed.fsdp import FSDPModule

        self.units = [m for m in model.modules() if isinstance(m, FSDPModule)]

    def __enter__(self):
        for m in self.units:
            m.set_requires_gradient_sync(False, recurse=False)

    def __exit__(self, *exc):
        for m in self.units:
            m.set_requires_gradient_sync(True, recurse=False)
        return False


def grad_sync_blocker(model, strategy, sharded: bool):
    """What holds back gradient reduction for the micro-batches before the last: FSDP2's, DDP's, or nothing
    (one device: SingleDeviceStrategy has no gradient sync)."""
    if sharded:
        return fsdp_no_sync(model)
    block = getattr(strategy, "block_backward_sync", None)
    return block() if block is not None else nullcontext()


def agreed_step(lit, opt, sched, loss: torch.Tensor, sharded: bool) -> tuple[bool, torch.Tensor]:
    """DDP, FSDP2 and one device: one gradient norm (logged, checked, clipped by), a finite check agreed by
    all ranks, then the optimiser and schedule step, or a skip. The callbacks' step votes (preemption,
    timed checkpoints) ride in the same all-reduce, so a step reads the device once."""
    trainer = lit.trainer
    params = [p for p in lit.model.parameters() if p.requires_grad]
    if sharded:
        average_replicated_(params, trainer.world_size)
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    if scaler is not None:  # 16-mixed: the norm and clipping see true gradients
        scaler.unscale_(opt.optimizer)
    gnorm = grad_norm(params).to(loss.device)
    ok = torch.isfinite(loss) & torch.isfinite(gnorm)
    if trainer.world_size > 1:  # decided together, or DDP hangs with some ranks stepping and others not
        names = sorted(lit.step_votes)
        votes = [loss.new_full((), float(bool(lit.step_votes[n]())), dtype=torch.float32) for n in names]
        flags = torch.stack([(~ok).float(), *votes])
        with watchdog.watch(f"the all-ranks finite check of step {lit.global_step} (with {', '.join(names)})"):
            bad, *agreed = trainer.strategy.reduce(flags, reduce_op="max").tolist()
        ok, lit.agreed = not bad, {n: bool(a) for n, a in zip(names, agreed)}
    else:
        ok = bool(ok)
    if not ok:
        opt.zero_grad(set_to_none=True)
        return False, gnorm
    if lit.optim_cfg.clip_grad:
        # our clipping over the norm above: Lightning's refuses FSDP and fused optimisers under mixed
        # precision, and would compute the norm a second time
        clip_(params, float(lit.optim_cfg.clip_grad), gnorm)
    opt.step()
    sched.step()
    return True, gnorm


def deepspeed_step(lit, opt, sched) -> tuple[bool, torch.Tensor]:
    """DeepSpeed holds the (partitioned) gradients: its engine computes the global norm, clips by it
    (`gradient_clipping`, set from optim.clip_grad) and skips the update when the norm is not finite (the
    same on every rank). The schedule is ours to step (Lightning detaches it), only when the engine updated."""
    with watchdog.watch(f"step {lit.global_step}'s DeepSpeed update (gradient norm, partition gathers)"):
        opt.step()
    norm = lit.trainer.strategy.deepspeed_engine.get_global_grad_norm()
    norm = torch.as_tensor(float("nan") if norm is None else norm, dtype=torch.float32).reshape(())
    ok = bool(torch.isfinite(norm))
    if ok:
        sched.step()
    return ok, norm


def count_nonfinite(lit, ok: bool) -> None:
    """Skipped steps in a row, logged; `optim.max_nonfinite` of them stop the run with a checkpoint (the
    skipped steps changed nothing: the weights are the last good state)."""
    if ok:
        lit.nonfinite_in_a_row = 0
        return
    lit.nonfinite_in_a_row += 1
    lit.log("train/skipped_nonfinite", float(lit.nonfinite_in_a_row))
    if lit.nonfinite_in_a_row >= lit.optim_cfg.max_nonfinite:
        path = os.path.join(lit.trainer.default_root_dir, "checkpoints", "nonfinite-stop.ckpt")
        lit.trainer.save_checkpoint(path)
        raise RuntimeError(
            f"{lit.nonfinite_in_a_row} optimiser steps in a row had a non-finite loss or gradient; stopping. "
            f"The last good state is in {path} (lower optim.lr, or check the data)"
        )


def log_step(lit, loss: torch.Tensor, gnorm: torch.Tensor, sched, batch_size: int) -> None:
    """The step's curves. Not on the progress bar: Lightning converts those values to numbers after every
    batch (a host sync each step); callbacks.ProgressBar reads `last_loss` only when it redraws."""
    lit.last_loss = loss
    lit.log("train/loss", loss, batch_size=batch_size)
    lit.log("train/grad_norm", gnorm, batch_size=batch_size)
    lit.log("train/lr", sched.get_last_lr()[0], batch_size=batch_size)
    lit.log("train/logit_scale", lit.model.logit_scale().detach(), batch_size=batch_size)

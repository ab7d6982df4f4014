"""The few collective helpers shared by the loss, the LightningModule, the callbacks and the data module."""

from __future__ import annotations

import dataclasses

import torch
import torch.distributed as dist

from clap_train.config import setting
from clap_train.watchdog import watch


@dataclasses.dataclass
class DistributedConfig:
    # A rank that waits longer than this in a collective (some rank never reached it) ends the job with a
    # report of where every rank is. Longer than any legitimate wait: the first compiled step, a checkpoint.
    timeout_s: float = setting(1200.0, kind=float, low=0, low_open=True)


def world_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) when not running distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_objects(obj, what: str) -> list:
    """Every rank's `obj` in rank order (a list of one when not distributed). A collective: all ranks call
    it; `what` names it in the watchdog's report when some rank never does."""
    world = world_info()[1]
    if world == 1:
        return [obj]
    out = [None] * world
    with watch(f"all_gather_object of {what}"):
        dist.all_gather_object(out, obj)
    return out


def agree(trainer, pl_module, name: str, mine: bool) -> bool:
    """A step-boundary decision every rank takes alike (any rank's True wins): the answer voted with the
    step's finite check (`ClapLit.step_votes` -> `agreed`), else an all-reduce of its own (DeepSpeed's
    engine step, or a module without votes)."""
    if trainer.world_size == 1:
        return mine
    got = getattr(pl_module, "agreed", {}).pop(name, None)
    if got is not None:
        return got
    flag = torch.tensor(float(mine), device=pl_module.device)
    with watch(f"the '{name}' decision of step {trainer.global_step}"):
        return bool(trainer.strategy.reduce(flag, reduce_op="max").item())

"""The few collective helpers shared by the loss, the LightningModule and the data module."""

from __future__ import annotations

import torch.distributed as dist


def world_info() -> tuple[int, int]:
    """(rank, world size); (0, 1) when not running distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_objects(obj) -> list:
    """Every rank's `obj` in rank order (a list of one when not distributed). A collective: all ranks call it."""
    world = world_info()[1]
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out

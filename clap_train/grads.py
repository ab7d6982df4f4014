"""Gradient norm and clipping over plain and FSDP2-sharded (DTensor) gradients, with no host sync.

One norm serves the logged `train/grad_norm`, the non-finite check and clipping: the norm is computed once
with `_foreach_norm` (a handful of kernels, not one per parameter) and clipping multiplies by a device-side
factor. Sharded gradients contribute their local shards' squares, summed over ranks with one all-reduce.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def _is_dtensor(t) -> bool:
    return type(t).__name__ == "DTensor"


def _local(g: torch.Tensor) -> torch.Tensor:
    return g.to_local() if _is_dtensor(g) else g


def grad_norm(params) -> torch.Tensor:
    """The global L2 norm of all gradients (fp32 at least, on their device; 0 when there are none)."""
    plain, sharded = [], []
    for p in params:
        if p.grad is not None:
            (sharded if _is_dtensor(p.grad) else plain).append(p.grad)
    sq = None
    for group, reduce in ((plain, False), (sharded, True)):
        if not group:
            continue
        norms = torch._foreach_norm([_local(g) for g in group])
        s = torch.stack([n.to(torch.promote_types(n.dtype, torch.float32)) for n in norms]).square().sum()
        if reduce and dist.is_initialized():
            dist.all_reduce(s)  # each rank holds a disjoint shard of every sharded gradient
        sq = s if sq is None else sq + s
    if sq is None:
        return torch.zeros(())
    return sq.sqrt()


def clip_(params, max_norm: float, norm: torch.Tensor) -> None:
    """Scale all gradients by min(1, max_norm / norm) in place, as torch's clip_grad_norm_ does."""
    grads = [_local(p.grad) for p in params if p.grad is not None]
    if grads:
        factor = (max_norm / (norm + 1e-6)).clamp(max=1.0)
        torch._foreach_mul_(grads, factor.to(grads[0].device))


def average_replicated_(params, world: int) -> None:
    """Under FSDP2 the parameters it does not shard (the 0-d temperatures) get no gradient reduction: average
    them over ranks here, in one all-reduce."""
    grads = [p.grad for p in params if p.grad is not None and not _is_dtensor(p.grad)]
    if not grads or world == 1:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    torch._foreach_copy_(grads, [f.view_as(g) for f, g in zip(flat.split([g.numel() for g in grads]), grads)])

"""Symmetric InfoNCE with negatives gathered across ranks.

Each rank holds b local (audio, text) pairs. With `gather_with_grad`, features of every rank are
all-gathered with their autograd graph (the backward of all_gather sums gradients back to their owner),
so the negatives of all N = world x b pairs shape every gradient. With `local_loss` each rank scores only
its own rows against all N columns (b x N instead of N x N); the labels are offset by rank x b. With
DDP averaging gradients over ranks, both forms give exactly the gradient of one N-pair batch.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from clap_train.config import setting
from clap_train.distributed import world_info


@dataclasses.dataclass
class LossConfig:
    local_loss: bool = setting(True, kind=bool)  # local rows x gathered columns (b x N, not N x N)
    gather_with_grad: bool = setting(True, kind=bool)  # negatives from every rank, with gradient


def gather_features(x: torch.Tensor, with_grad: bool = True) -> torch.Tensor:
    """Concatenate x from all ranks in rank order; keeps the graph when with_grad."""
    rank, world = world_info()
    if world == 1:
        return x
    if with_grad:
        import torch.distributed.nn.functional as dfn

        return torch.cat(dfn.all_gather(x), dim=0)
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.contiguous())
    parts[rank] = x  # the local slice keeps its graph
    return torch.cat(parts, dim=0)


class ContrastiveLoss(nn.Module):
    def __init__(self, local_loss: bool = True, gather_with_grad: bool = True):
        super().__init__()
        self.local_loss, self.gather_with_grad = local_loss, gather_with_grad

    def forward(self, audio: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
        """audio, text: [b, D] L2-normalised local features; logit_scale: the (already exp'd) scalar."""
        rank, world = world_info()
        b = audio.shape[0]
        if world == 1:
            logits = logit_scale * audio @ text.T
            labels = torch.arange(b, device=audio.device)
            return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        all_audio = gather_features(audio, self.gather_with_grad)
        all_text = gather_features(text, self.gather_with_grad)
        return gathered_infonce(audio, text, all_audio, all_text, logit_scale, rank * b, self.local_loss)


def gathered_infonce(audio, text, all_audio, all_text, logit_scale, offset: int, local_loss: bool) -> torch.Tensor:
    """One rank's loss once features are gathered: its own rows (at `offset`) against all N columns
    (local, b x N logits), or the whole N x N matrix on every rank."""
    b = audio.shape[0]
    if local_loss:
        logits_a = logit_scale * audio @ all_text.T
        logits_t = logit_scale * text @ all_audio.T
        labels = torch.arange(b, device=audio.device) + offset
    else:
        logits_a = logit_scale * all_audio @ all_text.T
        logits_t = logits_a.T
        labels = torch.arange(all_audio.shape[0], device=audio.device)
    return (F.cross_entropy(logits_a, labels) + F.cross_entropy(logits_t, labels)) / 2

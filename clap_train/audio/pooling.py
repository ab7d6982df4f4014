"""Temporal pooling of encoder frames [B, T, C] (+ optional valid mask [B, T]) -> [B, C]."""

import torch
from torch import nn

from clap_train.config import ConfigError


def _valid(frames: torch.Tensor, mask: torch.Tensor | None):
    """Frames with padded positions zeroed (so inf/NaN padding cannot leak) and mask [B, T, 1]."""
    if mask is None:
        return frames, None
    m = mask.to(torch.bool).unsqueeze(-1)
    return frames.masked_fill(~m, 0.0), m


class MeanPool(nn.Module):
    def forward(self, frames: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x, m = _valid(frames, mask)
        if m is None:
            return x.mean(dim=1)
        return x.sum(dim=1) / m.sum(dim=1).clamp(min=1).to(x.dtype)


class MaxMeanPool(nn.Module):
    """PANN clip recipe: max over time + mean over time."""

    def forward(self, frames: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        mean = MeanPool()(frames, mask)
        if mask is None:
            return frames.amax(dim=1) + mean
        x, m = _valid(frames, mask)
        mx = x.masked_fill(~m, float("-inf")).amax(dim=1)
        mx = torch.where(m.any(dim=1), mx, torch.zeros_like(mx))  # fully padded row -> 0
        return mx + mean


class AttentionPool(nn.Module):
    """Additive attention: score_t = w^T tanh(V h_t + b), softmax over valid frames."""

    def __init__(self, dim: int, hidden: int | None = None):
        super().__init__()
        self.proj = nn.Linear(dim, hidden or dim)
        self.score = nn.Linear(hidden or dim, 1, bias=False)

    def forward(self, frames: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x, m = _valid(frames, mask)
        s = self.score(torch.tanh(self.proj(x)))  # [B, T, 1]
        if m is not None:
            # Most negative finite value instead of -inf: padded weights are exactly 0, and a
            # fully padded row gives uniform weights over zeroed frames (output 0, no NaN).
            s = s.masked_fill(~m, torch.finfo(s.dtype).min)
        return (torch.softmax(s, dim=1) * x).sum(dim=1)


POOLINGS = {"mean": MeanPool, "maxmean": MaxMeanPool, "attention": AttentionPool}


def build_pooling(name: str, dim: int, **kwargs) -> nn.Module:
    """`kwargs` go to the pooling class (e.g. `hidden` for attention)."""
    if name not in POOLINGS:
        raise ConfigError(f"pooling.name={name!r}; valid choices: {', '.join(sorted(POOLINGS))}")
    return AttentionPool(dim, **kwargs) if name == "attention" else POOLINGS[name](**kwargs)

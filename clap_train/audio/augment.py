"""SpecAugment-style stripe dropping (torchlibrosa SpecAugmentation semantics)."""

import torch
from torch import nn


def _stripe_mask(batch: int, size: int, drop_width: int, stripes: int, device) -> torch.Tensor:
    """Bool [B, size], True where dropped. Per example and stripe: width uniform in
    [0, drop_width), start uniform over positions where the stripe fits."""
    if drop_width <= 0 or stripes <= 0:
        return torch.zeros(batch, size, dtype=torch.bool, device=device)
    # Draw from the global RNG on the input's device so callers can replay it.
    width = torch.randint(0, min(drop_width, size + 1), (batch, stripes, 1), device=device)
    start = (torch.rand(batch, stripes, 1, device=device) * (size - width + 1)).long()
    pos = torch.arange(size, device=device)
    return ((pos >= start) & (pos < start + width)).any(dim=1)


class SpecAugment(nn.Module):
    """Zero random time and frequency stripes of [B, C, T, F] inputs, training only.
    Set a width (or stripe count) to 0 to disable that axis."""

    def __init__(
        self, time_drop_width: int = 64, time_stripes_num: int = 2, freq_drop_width: int = 8, freq_stripes_num: int = 2
    ):
        super().__init__()
        self.time_drop_width, self.time_stripes_num = time_drop_width, time_stripes_num
        self.freq_drop_width, self.freq_stripes_num = freq_drop_width, freq_stripes_num

    @property
    def enabled(self) -> bool:
        return (self.time_drop_width > 0 and self.time_stripes_num > 0) or (
            self.freq_drop_width > 0 and self.freq_stripes_num > 0
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not self.enabled:
            return x
        b, _, t, f = x.shape
        t_drop = _stripe_mask(b, t, self.time_drop_width, self.time_stripes_num, x.device)
        f_drop = _stripe_mask(b, f, self.freq_drop_width, self.freq_stripes_num, x.device)
        drop = t_drop[:, None, :, None] | f_drop[:, None, None, :]
        return x.masked_fill(drop, 0.0)  # out of place: keeps autograd of the input intact

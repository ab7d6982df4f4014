"""The interface every audio tower implements (PANN CNNs, HTS-AT)."""

import torch
from torch import nn


class AudioEncoder(nn.Module):
    """forward_frames(mel, longer) -> frames [B, T', frame_dim]; the caller pools frames over time to
    [B, frame_dim] and applies `post_pool` -> [B, out_dim].

    `mel` is [B, T, n_mels], or [B, 4, T, n_mels] for towers with `fusion` (global view + three local
    crops, see audio/fusion.py) together with `longer` (bool [B]: which clips use the local crops).
    """

    frame_dim: int
    out_dim: int
    n_mels: int
    time_stride: int  # input mel frames per output frame, for downsampling frame masks
    post_pool: nn.Module
    fusion: bool = False

    def forward_frames(self, mel: torch.Tensor, longer: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, mel: torch.Tensor, longer: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_frames(mel, longer)

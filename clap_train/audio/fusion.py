"""Long-audio feature fusion (LAION-CLAP's `aff_2d`).

A clip longer than the model's 10 s is seen twice: a global view (its whole log-mel squeezed to 10 s of
frames by bilinear interpolation) and three local 10 s crops, one from each third of the clip. The
encoder patches the global view as usual and merges the locals into it with attentional feature fusion
(AFF). Clips of at most 10 s are "not longer": four copies of their (padded) mel, only the first read.

Crops are random in training and fixed (the middle of each third) at evaluation, so evaluation is
deterministic. In training LAION marks one random clip "longer" when a batch has none, which keeps the
fusion weights in every step's graph (DDP needs that); `force_longer` does the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AFF(nn.Module):
    """Attentional feature fusion of x with residual: out = 2·x·w + 2·residual·(1 - w), w = σ(local + global)."""

    def __init__(self, channels: int, r: int = 4):
        super().__init__()
        inter = channels // r
        self.local_att = nn.Sequential(
            nn.Conv2d(channels, inter, 1),
            nn.BatchNorm2d(inter),
            nn.ReLU(inplace=True),
            nn.Conv2d(inter, channels, 1),
            nn.BatchNorm2d(channels),
        )
        self.global_att = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, inter, 1),
            nn.BatchNorm2d(inter),
            nn.ReLU(inplace=True),
            nn.Conv2d(inter, channels, 1),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        z = x + residual
        w = torch.sigmoid(self.local_att(z) + self._global(z))
        return 2 * x * w + 2 * residual * (1 - w)

    def _global(self, z: torch.Tensor) -> torch.Tensor:
        """The pooled branch. One clip in training (a batch whose only "longer" clip is the forced one, the
        usual case for short clips) gives its BatchNorms one value per channel, for which batch statistics
        do not exist (torch raises, as in LAION's code): those use their running statistics for the step."""
        if not (self.training and z.shape[0] == 1):
            return self.global_att(z)
        norms = [m for m in self.global_att if isinstance(m, nn.BatchNorm2d)]
        for m in norms:
            m.eval()
        try:
            return self.global_att(z)
        finally:
            for m in norms:
                m.train()


def crop_ranges(total: int, chunk: int) -> list[tuple[int, int]]:
    """The three [lo, hi] ranges of local-crop starts (numpy.array_split of 0..total-chunk into thirds;
    an empty third falls back to start 0, as the reference)."""
    n = total - chunk + 1
    sizes = [n // 3 + (1 if i < n % 3 else 0) for i in range(3)]
    out, lo = [], 0
    for s in sizes:
        out.append((lo, lo + s - 1) if s > 0 else (0, 0))
        lo += s
    return out


def fuse_mel(mel: torch.Tensor, chunk: int, starts: list[int] | None = None) -> torch.Tensor:
    """One clip's log-mel [T, F] with T > chunk -> [4, chunk, F]: global view + three local crops.

    `starts`: the three crop offsets; default the middle of each range (evaluation)."""
    if starts is None:
        starts = [(lo + hi) // 2 for lo, hi in crop_ranges(mel.shape[0], chunk)]
    glob = F.interpolate(mel[None, None], size=(chunk, mel.shape[1]), mode="bilinear", align_corners=False)[0, 0]
    return torch.stack([glob] + [mel[s : s + chunk] for s in starts])


def fusion_mels(
    logmel,
    audio: torch.Tensor,
    audio_len: torch.Tensor | None,
    clip_samples: int,
    training: bool,
    force_longer: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Waveforms [B, T] (true lengths `audio_len`; clips ≤ clip_samples already padded to it) ->
    (fusion mel [B, 4, chunk, F], longer bool [B]). Long clips get their own STFT over their true length,
    so zero padding in the batch never leaks into their frames."""
    b = audio.shape[0]
    lens = audio_len.tolist() if audio_len is not None else [audio.shape[1]] * b
    chunk = logmel.num_frames(clip_samples)
    short = logmel(audio[:, :clip_samples])  # [B, chunk, F]: exact for every clip ≤ clip_samples
    if short.shape[1] != chunk:
        raise ValueError(f"fusion needs clips padded to {clip_samples} samples, got {audio.shape[1]}")
    out = short[:, None].expand(b, 4, chunk, short.shape[-1]).clone()
    longer = torch.zeros(b, dtype=torch.bool, device=audio.device)
    for i, n in enumerate(lens):
        if n <= clip_samples or logmel.num_frames(n) <= chunk:
            continue
        mel = logmel(audio[i : i + 1, :n])[0]
        starts = None
        if training:
            starts = [int(torch.randint(lo, hi + 1, ())) for lo, hi in crop_ranges(mel.shape[0], chunk)]
        out[i] = fuse_mel(mel, chunk, starts)
        longer[i] = True
    if training and force_longer and b and not bool(longer.any()):
        longer[int(torch.randint(0, b, ()))] = True
    return out, longer

"""PANN CNN audio encoders (Cnn14 / Cnn10 / Cnn6 / tiny) in LAION-CLAP layout.

Module names follow LAION-CLAP's pann_model.py (bn0, conv_blockN.convK / bnK) so
checkpoints map by name. Differences by design: no internal spectrogram (LogMel
runs outside), no fc_audioset head, and fc1 lives in `post_pool` (key
`post_pool.fc1.*` <-> LAION `fc1.*`).
"""

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from clap_train.config import ConfigError

from .augment import SpecAugment
from .encoder import AudioEncoder


class ConvBlock(nn.Module):
    """One (Cnn6: 5x5) or two (Cnn10/14: 3x3) conv-BN-ReLU layers, then avg-pool."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, n_convs: int = 2):
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv2d(c_in, c_out, kernel_size, padding=pad, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        if n_convs == 2:
            self.conv2 = nn.Conv2d(c_out, c_out, kernel_size, padding=pad, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor, pool: int) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        if hasattr(self, "conv2"):
            x = F.relu(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, pool) if pool > 1 else x


class PANN(AudioEncoder):
    block_type = ConvBlock

    def __init__(
        self,
        channels,
        pools,
        kernel_size: int = 3,
        n_convs: int = 2,
        n_mels: int = 64,
        dropout: float = 0.2,
        post_dropout: float = 0.5,
        spec_augment: dict | None = None,
        channels_last: bool = False,
        gradient_checkpointing: bool = False,
        freeze_layers: int = 0,
    ):
        super().__init__()
        assert len(channels) == len(pools)
        self.n_mels = n_mels
        self.frame_dim = self.out_dim = channels[-1]
        self.pools = tuple(pools)
        self.time_stride = math.prod(pools)
        self.dropout = dropout
        self.channels_last = channels_last
        self.gradient_checkpointing = gradient_checkpointing  # recompute conv blocks in backward: less memory
        self.spec_augment = SpecAugment(**spec_augment) if spec_augment is not None else None
        self.bn0 = nn.BatchNorm2d(n_mels)  # normalises each mel bin
        c_in = 1
        for i, c in enumerate(channels, start=1):
            self.add_module(f"conv_block{i}", ConvBlock(c_in, c, kernel_size, n_convs))
            c_in = c
        # LAION: embedding = dropout(relu(fc1(dropout(max_t + mean_t)))).
        self.post_pool = nn.Sequential(
            OrderedDict(
                dropout=nn.Dropout(post_dropout),
                fc1=nn.Linear(c_in, c_in),
                relu=nn.ReLU(),
                dropout2=nn.Dropout(post_dropout),
            )
        )
        self._init_weights()
        self.freeze(freeze_layers)

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def stem_and_stages(self):
        return [self.bn0], [getattr(self, f"conv_block{i}") for i in range(1, len(self.pools) + 1)]

    def forward_frames(self, mel: torch.Tensor, longer: torch.Tensor | None = None) -> torch.Tensor:
        x = mel.unsqueeze(1)  # [B, 1, T, F]
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # mel bins as BN channels
        if self.spec_augment is not None:
            x = self.spec_augment(x)  # no-op in eval
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        ckpt = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for i, pool in enumerate(self.pools, start=1):
            block = getattr(self, f"conv_block{i}")
            x = (
                torch.utils.checkpoint.checkpoint(_first_call_updates_bn(block, pool), x, use_reentrant=False)
                if ckpt
                else block(x, pool)
            )
            x = F.dropout(x, self.dropout, self.training)
        return x.mean(dim=3).transpose(1, 2).contiguous()  # mean over freq -> [B, T', C]


def _first_call_updates_bn(block: nn.Module, pool: int):
    """The block as a function whose recomputation in backward (gradient checkpointing) leaves BatchNorm
    running statistics alone: they advance once per training forward, as without checkpointing."""
    calls = [0]

    def run(x):
        calls[0] += 1
        if calls[0] == 1:
            return block(x, pool)
        bns = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
        saved = [(m.momentum, m.num_batches_tracked.clone()) for m in bns]
        for m in bns:
            m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch: unchanged
        try:
            return block(x, pool)
        finally:
            for m, (mom, n) in zip(bns, saved):
                m.momentum = mom
                m.num_batches_tracked.copy_(n)

    return run


class Cnn14(PANN):
    def __init__(self, **kwargs):
        super().__init__((64, 128, 256, 512, 1024, 2048), (2, 2, 2, 2, 2, 1), **kwargs)


class Cnn10(PANN):
    def __init__(self, **kwargs):
        super().__init__((64, 128, 256, 512, 1024), (2, 2, 2, 2, 2), **kwargs)


class Cnn6(PANN):
    def __init__(self, **kwargs):
        super().__init__((64, 128, 256, 512), (2, 2, 2, 2), kernel_size=5, n_convs=1, **kwargs)


class CnnTiny(PANN):
    """Cnn10-style double-conv blocks with small configurable widths (tests, CPU runs)."""

    def __init__(self, channels=(16, 32, 64, 128), **kwargs):
        super().__init__(tuple(channels), (2,) * len(channels), **kwargs)


PANNS = {"cnn14": Cnn14, "cnn10": Cnn10, "cnn6": Cnn6, "tiny": CnnTiny}


def build_pann(name: str, **kwargs) -> PANN:
    if name not in PANNS:
        raise ConfigError(f"audio_encoder.name={name!r}; valid choices: {', '.join(sorted(PANNS))}")
    return PANNS[name](**kwargs)

"""The interface every audio tower implements (PANN CNNs, HTS-AT)."""

import torch
from torch import nn

from clap_train.config import ConfigError


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
    block_type: type[nn.Module]  # the repeated block: one FSDP unit each (strategies.shard_model)

    def forward_frames(self, mel: torch.Tensor, longer: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, mel: torch.Tensor, longer: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_frames(mel, longer)

    def wrap_units(self) -> list[nn.Module]:
        return [m for m in self.modules() if isinstance(m, self.block_type)]

    def stem_and_stages(self) -> tuple[list[nn.Module], list[nn.Module]]:
        """The input stem (input norm, patch embedding) and the stages in input order, for freezing."""
        raise NotImplementedError

    def freeze(self, n_stages: int) -> None:
        """Freeze the stem and the first `n_stages` stages (-1: the whole tower). Frozen modules also stay in
        eval mode, so their BatchNorm statistics and dropout are those of the checkpoint."""
        stem, stages = self.stem_and_stages()
        if n_stages == 0:
            return
        if n_stages < -1 or n_stages > len(stages):
            raise ConfigError(
                f"audio_encoder.freeze_layers={n_stages}; valid: 0..{len(stages)} stages, or -1 for the whole tower"
            )
        self._frozen = [self] if n_stages == -1 else stem + stages[:n_stages]
        for m in self._frozen:
            for p in m.parameters():
                p.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True):
        frozen = getattr(self, "_frozen", [])
        super().train(mode and not any(m is self for m in frozen))
        for m in frozen:
            if m is not self:
                m.train(False)
        return self

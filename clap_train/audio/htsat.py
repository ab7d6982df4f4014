"""HTS-AT (hierarchical token-semantic audio transformer): the audio tower of LAION-CLAP's released models.

Same maths and parameter names as LAION-CLAP's htsat.py (so `audio_branch.*` keys map one to one):
log-mel [B, T, 64] -> bn0 over mel bins -> bicubic resize to 1024 frames -> folded into a 256x256
"image" (4 time chunks stacked along frequency) -> 4x4 patches -> four Swin stages (shifted 8x8
windows, relative position bias, patch merging) -> LayerNorm. The clip embedding LAION uses is the
mean of the final tokens; we hand the tokens on as 32 time frames (mean over the remaining frequency
rows), so `pooling=mean` reproduces it exactly and the other poolings see per-frame features.

Window attention runs through `scaled_dot_product_attention` with the relative position bias and the
shift mask folded into one additive mask, broadcast over the batch (no per-window copy).
The AudioSet classifier (`tscam_conv`, `head`) is not built: CLAP never uses it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clap_train.config import ConfigError

from .augment import SpecAugment
from .encoder import AudioEncoder
from .fusion import AFF

# name -> (embed_dim, depths, num_heads), as LAION-CLAP's create_htsat_model.
HTSAT_SIZES = {
    "tiny": (96, (2, 2, 6, 2), (4, 8, 16, 32)),
    "base": (128, (2, 2, 12, 2), (4, 8, 16, 32)),
    "large": (256, (2, 2, 12, 2), (4, 8, 16, 32)),
}


def relative_position_index(window: int) -> torch.Tensor:
    """[window², window²] index into the (2w-1)² bias table for every (query, key) pair of a window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def window_partition(x: torch.Tensor, w: int) -> torch.Tensor:
    """[B, H, W, C] -> [B * (H/w) * (W/w), w*w, C], windows in row-major order per example."""
    b, h, wd, c = x.shape
    x = x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, w * w, c)


def window_reverse(windows: torch.Tensor, w: int, h: int, wd: int) -> torch.Tensor:
    c = windows.shape[-1]
    x = windows.view(-1, h // w, wd // w, w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, wd, c)


def shift_mask(h: int, wd: int, window: int, shift: int) -> torch.Tensor:
    """[num_windows, w², w²] additive mask: -100 between tokens that the cyclic shift made neighbours."""
    region = torch.zeros(1, h, wd, 1)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for i, (hs, ws) in enumerate((a, b) for a in cuts for b in cuts):
        region[:, hs, ws, :] = i
    r = window_partition(region, window).squeeze(-1)  # [nW, w²]
    diff = r[:, None, :] - r[:, :, None]
    return diff.ne(0).float() * -100.0


class WindowAttention(nn.Module):
    def __init__(
        self, dim: int, heads: int, window: int, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0
    ):
        super().__init__()
        self.heads, self.window, self.attn_drop = heads, window, attn_drop
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x [B*nW, N, C] (windows of each example contiguous); mask [nW, N, N] or None."""
        bw, n, c = x.shape
        q, k, v = self.qkv(x).view(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, self.heads).permute(2, 0, 1)  # [h, N, N]
        drop = self.attn_drop if self.training else 0.0
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias[None].to(q.dtype), dropout_p=drop)
        else:
            # Fold the windows of one example into the head axis: [B, nW*h, N, d] with a [1, nW*h, N, N]
            # mask broadcast over the batch keeps SDPA 4-D (fused kernels) without expanding the mask.
            nw = mask.shape[0]
            fold = lambda t: t.reshape(bw // nw, nw * self.heads, n, -1)  # noqa: E731
            m = (bias[None] + mask[:, None].to(bias.dtype)).reshape(1, nw * self.heads, n, n)
            out = F.scaled_dot_product_attention(
                fold(q), fold(k), fold(v), attn_mask=m.to(q.dtype), dropout_p=drop
            ).reshape(bw, self.heads, n, -1)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(bw, n, c)))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop the residual branch per example."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - p)
    return x * keep / (1 - p)


class SwinBlock(nn.Module):
    def __init__(
        self,
        dim: int,
        resolution: tuple[int, int],
        heads: int,
        window: int,
        shift: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path_rate: float = 0.0,
    ):
        super().__init__()
        h, w = resolution
        if min(h, w) <= window:  # one window covers the map: no shift (as the reference)
            window, shift = min(h, w), 0
        if h % window or w % window:
            raise ValueError(f"HTS-AT: feature map {h}x{w} is not a multiple of window_size={window}")
        self.resolution, self.window, self.shift, self.drop_path_rate = (h, w), window, shift, drop_path_rate
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window, qkv_bias, attn_drop, drop)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.register_buffer("attn_mask", shift_mask(h, w, window, shift) if shift else None, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        b, _, c = x.shape
        y = self.norm1(x).view(b, h, w, c)
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), dims=(1, 2))
        y = window_reverse(self.attn(window_partition(y, self.window), self.attn_mask), self.window, h, w)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), dims=(1, 2))
        x = x + drop_path(y.reshape(b, h * w, c), self.drop_path_rate, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path_rate, self.training)


class PatchMerging(nn.Module):
    """2x2 neighbouring tokens -> one token of twice the width."""

    def __init__(self, resolution: tuple[int, int], dim: int):
        super().__init__()
        self.resolution = resolution
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = self.resolution
        b, _, c = x.shape
        x = x.view(b, h, w, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.view(b, -1, 4 * c)))


class Stage(nn.Module):
    def __init__(
        self,
        dim,
        resolution,
        depth,
        heads,
        window,
        mlp_ratio,
        qkv_bias,
        drop,
        attn_drop,
        dpr,
        downsample: bool,
        checkpointing: bool,
    ):
        super().__init__()
        self.blocks = nn.ModuleList(
            [
                SwinBlock(
                    dim,
                    resolution,
                    heads,
                    window,
                    0 if i % 2 == 0 else window // 2,
                    mlp_ratio,
                    qkv_bias,
                    drop,
                    attn_drop,
                    dpr[i],
                )
                for i in range(depth)
            ]
        )
        self.downsample = PatchMerging(resolution, dim) if downsample else None
        self.checkpointing = checkpointing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for blk in self.blocks:
            if self.checkpointing and self.training and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return self.downsample(x) if self.downsample is not None else x


class PatchEmbed(nn.Module):
    """Conv patches of the folded spectrogram; with fusion, the three local crops are patched with a
    3x wider stride along time, laid side by side, and merged into the global view by AFF."""

    def __init__(self, dim: int, patch: int, stride: int, fusion: bool, aff_r: int = 4):
        super().__init__()
        pad = ((patch - stride) // 2, (patch - stride) // 2)
        self.proj = nn.Conv2d(1, dim, patch, stride, pad)
        self.norm = nn.LayerNorm(dim)
        self.fusion = fusion
        if fusion:
            self.mel_conv2d = nn.Conv2d(1, dim, (patch, patch * 3), (stride, stride * 3), pad)
            self.fusion_model = AFF(dim, aff_r)

    def forward(self, x: torch.Tensor, longer_idx: torch.Tensor | None) -> torch.Tensor:
        if not self.fusion:
            x = self.proj(x)
        else:
            g = self.proj(x[:, :1])
            if longer_idx is not None and longer_idx.numel():
                local = x[longer_idx, 1:]
                b, c, h, w = local.shape
                local = self.mel_conv2d(local.reshape(b * c, 1, h, w))
                _, f, lh, lw = local.shape
                local = local.view(b, c, f, lh, lw).permute(0, 2, 3, 1, 4).flatten(3)  # crops side by side
                tw = g.shape[-1]
                local = F.pad(local, (0, tw - local.shape[-1])) if local.shape[-1] < tw else local[..., :tw]
                g = g.index_put((longer_idx,), self.fusion_model(g[longer_idx], local))
            x = g
        return self.norm(x.flatten(2).transpose(1, 2))


def swin_stages(
    embed_dim, depths, num_heads, grid, window_size, mlp_ratio, qkv_bias, drops, checkpointing
) -> nn.ModuleList:
    """The Swin stages: widths double and the token grid halves per stage; stochastic depth grows linearly
    over all blocks (as the reference)."""
    drop_rate, attn_drop_rate, drop_path_rate = drops
    n = sum(depths)
    dpr = [drop_path_rate * i / max(n - 1, 1) for i in range(n)]
    stages = nn.ModuleList()
    for i, (depth, heads) in enumerate(zip(depths, num_heads)):
        res = grid // 2**i
        block_drops = dpr[sum(depths[:i]) : sum(depths[: i + 1])]
        last = i == len(depths) - 1
        stages.append(
            Stage(
                embed_dim * 2**i, (res, res), depth, heads, window_size, mlp_ratio, qkv_bias, drop_rate,
                attn_drop_rate, block_drops, not last, checkpointing,
            )
        )  # fmt: skip
    return stages


class HTSAT(AudioEncoder):
    block_type = SwinBlock

    def __init__(
        self,
        name: str | None = "tiny",
        embed_dim: int | None = None,
        depths=None,
        num_heads=None,
        n_mels: int = 64,
        spec_size: int = 256,
        patch_size: int = 4,
        patch_stride: int = 4,
        window_size: int = 8,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        fusion: bool = False,
        spec_augment: dict | None = None,
        gradient_checkpointing: bool = False,
        freeze_layers: int = 0,
    ):
        super().__init__()
        if name is not None:
            if name not in HTSAT_SIZES:
                raise ConfigError(f"audio_encoder.name={name!r}; valid choices: {', '.join(HTSAT_SIZES)}")
            d, dp, hd = HTSAT_SIZES[name]
            embed_dim, depths, num_heads = embed_dim or d, depths or dp, num_heads or hd
        if spec_size % n_mels or (spec_size // patch_stride) % (2 ** (len(depths) - 1)):
            raise ConfigError(
                f"audio_encoder: HTS-AT spec_size={spec_size} must be a multiple of n_mels={n_mels} and of "
                f"patch_stride * 2^(stages-1)"
            )
        self.n_mels, self.spec_size, self.fusion = n_mels, spec_size, fusion
        self.freq_ratio = spec_size // n_mels
        self.spec_augment = SpecAugment(**spec_augment) if spec_augment is not None else None
        self.bn0 = nn.BatchNorm2d(n_mels)
        self.patch_embed = PatchEmbed(embed_dim, patch_size, patch_stride, fusion)
        self.pos_drop = nn.Dropout(drop_rate)
        grid = spec_size // patch_stride
        drops = (drop_rate, attn_drop_rate, drop_path_rate)
        self.layers = swin_stages(
            embed_dim, depths, num_heads, grid, window_size, mlp_ratio, qkv_bias, drops, gradient_checkpointing
        )
        self.frame_dim = self.out_dim = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(self.out_dim)
        self.final_grid = grid // 2 ** (len(depths) - 1)
        if self.final_grid % self.freq_ratio:
            raise ConfigError(
                f"audio_encoder: HTS-AT's final {self.final_grid}x{self.final_grid} token grid must split into "
                f"freq_ratio={self.freq_ratio} time chunks"
            )
        self.time_stride = spec_size // self.final_grid  # (spec_size*r mel frames) / (r*g output frames)
        self.post_pool = nn.Identity()
        self.apply(_init)
        self.freeze(freeze_layers)

    def stem_and_stages(self):
        return [self.bn0, self.patch_embed], list(self.layers)

    def fold(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T, F] -> [B, C, F*r, T'/r] with T' = spec_size*r: the time axis cut into r chunks stacked
        along frequency, after a bicubic resize to T' frames (1001 -> 1024 for 10 s clips)."""
        b, c, t, f = x.shape
        target_t = self.spec_size * self.freq_ratio
        if t > target_t or f != self.n_mels:
            raise ValueError(
                f"HTS-AT takes at most {target_t} mel frames of {self.n_mels} bins, got {t}x{f}: "
                "crop the audio to the model's clip length (or use fusion for long clips)"
            )
        if t < target_t:
            x = F.interpolate(x, (target_t, f), mode="bicubic", align_corners=True)
        r = self.freq_ratio
        x = x.reshape(b, c * r, target_t // r, f).transpose(2, 3)
        return x.reshape(b, c, f * r, target_t // r)

    def forward_frames(self, mel: torch.Tensor, longer: torch.Tensor | None = None) -> torch.Tensor:
        x = mel.unsqueeze(1) if mel.ndim == 3 else mel  # [B, C, T, F]; C = 4 with fusion input
        if self.fusion and x.shape[1] != 4:
            raise ValueError("a fusion HTS-AT takes the 4-channel fusion mel (audio/fusion.py)")
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        if self.spec_augment is not None:
            x = self.spec_augment(x)
        longer_idx = torch.nonzero(longer.reshape(-1)).reshape(-1) if self.fusion and longer is not None else None
        x = self.pos_drop(self.patch_embed(self.fold(x), longer_idx))
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)  # [B, g*g, C], tokens row-major over (freq, time) of the folded image
        b, _, c = x.shape
        g, r = self.final_grid, self.freq_ratio
        x = x.view(b, r, g // r, g, c)  # (chunk, freq row, time) -> chunks back in time order
        return x.mean(2).reshape(b, r * g, c)


def _init(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def build_htsat(name: str = "tiny", **kwargs) -> HTSAT:
    return HTSAT(name=name, **kwargs)

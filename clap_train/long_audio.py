"""Embedding audio longer than the model's clip: which part the model sees.

- first: the first clip-length window (what evaluation sees; only that window is decoded)
- slide: windows of `window_seconds` every `hop_seconds` from the start, plus one ending at the file's
  end where the hops do not reach it; their embeddings averaged and re-normalised. Deterministic (fixed
  positions, no randomness), and streamed: memory holds one window and one batch, whatever the length.
- fusion: the model's own fusion path (global view + fixed local crops) over the first
  `fusion_max_seconds` (fusion towers only)

A fusion model defaults to `fusion`, any other to `first`, as before this option existed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from clap_train.config import ConfigError, check_choice, check_number

MODES = ("first", "slide", "fusion")


@dataclass
class LongAudio:
    mode: str | None = None  # None: fusion for fusion models, else first
    window_seconds: float | None = None  # None: the model's clip length
    hop_seconds: float | None = None  # None: half a window
    fusion_max_seconds: float = 60.0
    batch_size: int = 16  # windows per forward pass (slide)

    def __post_init__(self):
        if self.mode is not None:
            check_choice("--long-audio", self.mode, MODES)
        if self.window_seconds is not None:
            check_number("--window-seconds", self.window_seconds, float, 0, low_open=True)
        if self.hop_seconds is not None:
            check_number("--hop-seconds", self.hop_seconds, float, 0, low_open=True)
        check_number("--fusion-max-seconds", self.fusion_max_seconds, float, 0, low_open=True)

    def resolve(self, clip_seconds: float, fusion: bool) -> LongAudio:
        """The settings for one model: defaults filled in, and what that model cannot do refused."""
        mode = self.mode or ("fusion" if fusion else "first")
        if mode == "fusion" and not fusion:
            raise ConfigError("--long-audio fusion needs a model with a fusion audio tower; use first or slide")
        window = self.window_seconds or clip_seconds
        if window > clip_seconds:
            raise ConfigError(
                f"--window-seconds={window:g} is longer than the model's clip ({clip_seconds:g} s): it would see "
                "only the window's start; use a window of at most the clip length"
            )
        return LongAudio(mode, window, self.hop_seconds or window / 2, self.fusion_max_seconds, self.batch_size)

    def samples(self, sample_rate: int) -> tuple[int, int]:
        """(window, hop) in samples at `sample_rate` (call on resolved settings)."""
        return int(round(self.window_seconds * sample_rate)), max(1, int(round(self.hop_seconds * sample_rate)))


def window_starts(n: int, window: int, hop: int) -> list[int]:
    """Start of each window over `n` samples: every `hop` while a whole window fits, then one ending at
    the end if the last did not; a clip no longer than one window is one window."""
    if n <= window:
        return [0]
    starts = list(range(0, n - window + 1, hop))
    if starts[-1] + window < n:
        starts.append(n - window)
    return starts


def slide(chunks: Iterable[np.ndarray], window: int, hop: int) -> Iterator[np.ndarray]:
    """The windows of `window_starts` over a stream of 1-D chunks, yielded as soon as each is complete;
    the buffer never holds more than a window plus a chunk."""
    buf, base, start, total, last_end = np.zeros(0, np.float32), 0, 0, 0, 0
    for c in chunks:
        buf = np.concatenate([buf, c]) if buf.size else c
        total += c.shape[0]
        while start + window <= total:
            yield buf[start - base : start - base + window]
            last_end, start = start + window, start + hop
        keep = max(min(start, total - window), base)  # the end-aligned window may still need the tail
        buf, base = buf[keep - base :], keep
    if total == 0:
        return
    if total <= window and last_end == 0:
        yield buf  # shorter than a window: the whole clip (padded by the model as any short clip)
    elif last_end < total:
        yield buf[buf.shape[0] - window :]


def mean_embedding(batches: Iterable, encode) -> object:
    """Average of `encode(batch)` rows over all batches, re-normalised (torch tensors [B, D] -> [D])."""
    import torch.nn.functional as F

    total, n = None, 0
    for b in batches:
        e = encode(b)
        total = e.sum(0) if total is None else total + e.sum(0)
        n += e.shape[0]
    if total is None:
        raise ValueError("no audio to embed")
    return F.normalize(total / n, dim=-1)


def batched(it: Iterable, size: int) -> Iterator[list]:
    out = []
    for x in it:
        out.append(x)
        if len(out) == size:
            yield out
            out = []
    if out:
        yield out

"""Choosing the crop window and fitting a clip to the model length (LAION's truncation/padding modes)."""

from __future__ import annotations

import numpy as np

CROPS = ("rand_trunc", "start", "center")
PADS = ("repeatpad", "repeat", "pad")


def choose_window(n: int, window: int, crop: str, rng: np.random.Generator | None) -> int:
    """Start offset of a `window`-sample crop in an `n`-sample clip."""
    if n <= window:
        return 0
    if crop == "rand_trunc":
        return int(rng.integers(0, n - window + 1))
    if crop == "start":
        return 0
    if crop == "center":
        return (n - window) // 2
    raise ValueError(f"crop={crop!r}; valid choices: {', '.join(CROPS)}")


def fit_length(x: np.ndarray, n: int, pad: str) -> np.ndarray:
    """Trim to n samples, or fill a short clip: repeatpad (whole repeats, then zeros), repeat, pad."""
    if x.shape[0] >= n:
        return np.ascontiguousarray(x[:n])
    if pad == "pad":
        reps = 1
    elif pad == "repeatpad":
        reps = n // x.shape[0]
    elif pad == "repeat":
        reps = -(-n // x.shape[0])
    else:
        raise ValueError(f"pad={pad!r}; valid choices: {', '.join(PADS)}")
    y = np.tile(x, reps)[:n]
    return np.pad(y, (0, n - y.shape[0])) if y.shape[0] < n else y

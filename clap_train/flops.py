"""Model FLOPs (attention included) and the device's achieved matmul peak: the two halves of MFU."""

from __future__ import annotations

import time

import torch


def measure_peak_flops(seconds: float = 0.5, device: str | None = None, dtype: torch.dtype = torch.float32) -> float:
    """Achieved FLOP/s of a large matmul on this device in `dtype`: the yardstick MFU is measured against."""
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(dev).type
    n = 2048 if dev == "cpu" else 8192
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    a @ b
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    if dev == "cuda":
        torch.cuda.synchronize()
    return 2 * n ** 3 * reps / (time.perf_counter() - t0)


class flop_counter:
    """FlopCounterMode with attention forced onto the math kernel, which the counter can see on CPU."""

    def __enter__(self):
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torch.utils.flop_counter import FlopCounterMode

        self.fc, self.kernel = FlopCounterMode(display=False), sdpa_kernel(SDPBackend.MATH)
        self.kernel.__enter__()
        self.fc.__enter__()
        return self.fc

    def __exit__(self, *exc):
        self.fc.__exit__(*exc)
        self.kernel.__exit__(*exc)
        return False

"""Model FLOPs (attention included) and the device's achieved matmul peak: the two halves of MFU."""

from __future__ import annotations

import time

import torch


def measure_peak_flops(seconds: float = 0.5) -> float:
    """Achieved FLOP/s of a large fp32 matmul on this device: the yardstick MFU is measured against."""
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    n = 2048 if dev == "cpu" else 8192
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
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

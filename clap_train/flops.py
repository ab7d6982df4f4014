"""Model FLOPs (attention included) and the device's achieved matmul peak: the two halves of MFU."""

from __future__ import annotations

import time

import torch


def measure_peak_flops(
    seconds: float = 1.0, device: str | None = None, dtype: torch.dtype = torch.float32, windows: int = 3
) -> float:
    """Achieved FLOP/s of a large matmul on this device in `dtype` (fp32 under the process's TF32 setting, as
    training runs it): the yardstick MFU is measured against. Best of `windows` timed windows after a warm-up
    that also sizes the matmul: one short reading swung 2x from day to day on a shared CPU (187 vs 370)."""
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(dev).type

    def sync():
        if dev == "cuda":
            torch.cuda.synchronize()

    window = seconds / max(1, windows)
    # the largest square matmul (up to 2048 on CPU, 8192 on GPU) that fits a window: bf16 on a CPU without
    # bf16 units is many times slower than fp32, and a fixed size would take minutes
    n, top = 256, (2048 if dev == "cpu" else 8192)
    # a private generator: how many sizes are tried depends on timing, and drawing them from the global RNG
    # made dropout (and so the loss) of two identical runs differ
    gen = torch.Generator(dev).manual_seed(0)
    while True:
        a, b = (torch.randn(n, n, device=dev, dtype=dtype, generator=gen) for _ in range(2))
        sync()
        t0 = time.perf_counter()
        a @ b
        sync()
        if n >= top or (time.perf_counter() - t0) * 8 > window:  # the next size costs 8x
            break
        n *= 2
    best = 0.0
    for _ in range(max(1, windows)):
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < window:
            a @ b
            reps += 1
        sync()
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0))
    return best


def precision_dtype(precision) -> torch.dtype:
    """The matmul dtype a Lightning precision setting trains in (bf16-mixed: bf16; 16-mixed: fp16)."""
    p = str(precision)
    if "bf16" in p:
        return torch.bfloat16
    if p.startswith("16"):
        return torch.float16
    return torch.float64 if p.startswith("64") else torch.float32


class flop_counter:
    """FlopCounterMode with attention forced onto the math kernel, which the counter can see on CPU, and
    compiled code run eagerly: under the counter (a dispatch mode) Dynamo would skip the frames and mark them
    skipped for good (a compiled run never compiled), and a graph first traced under the math kernel keeps
    it."""

    def __enter__(self):
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torch.utils.flop_counter import FlopCounterMode

        self.parts = [
            torch.compiler.set_stance("force_eager"),
            sdpa_kernel(SDPBackend.MATH),
            FlopCounterMode(display=False),
        ]
        for p in self.parts:
            p.__enter__()
        return self.parts[-1]

    def __exit__(self, *exc):
        for p in reversed(self.parts):
            p.__exit__(*exc)
        return False

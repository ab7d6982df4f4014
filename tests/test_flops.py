"""The MFU yardstick: the peak of the dtype a run trains in."""

import pytest
import torch

from clap_train.callbacks import Throughput
from clap_train.flops import measure_peak_flops, precision_dtype


@pytest.mark.parametrize(
    "precision,dtype",
    [
        ("bf16-mixed", torch.bfloat16),
        ("bf16-true", torch.bfloat16),
        ("16-mixed", torch.float16),
        ("32-true", torch.float32),
        ("64-true", torch.float64),
    ],
)
def test_precision_dtype(precision, dtype):
    assert precision_dtype(precision) == dtype


def test_throughput_measures_the_peak_in_the_runs_dtype(monkeypatch):
    seen = []
    monkeypatch.setattr(
        "clap_train.callbacks.measure_peak_flops",
        lambda seconds, device, dtype: seen.append((seconds, device, dtype)) or 1e12,
    )

    class T:
        precision, global_rank, world_size = "bf16-mixed", 0, 1

        class strategy:
            root_device = torch.device("cpu")

    cb = Throughput(peak_seconds=0.5)
    cb.setup(T(), None, "fit")
    assert seen == [(0.5, "cpu", torch.bfloat16)] and cb.peak == 1e12


def test_only_rank_0_measures_and_the_others_get_its_figure(monkeypatch):
    calls = []
    monkeypatch.setattr(
        "clap_train.callbacks.measure_peak_flops", lambda seconds, device, dtype: calls.append(1) or 5e11
    )

    class T:
        precision, global_rank, world_size = "32-true", 1, 2

        class strategy:
            root_device = torch.device("cpu")

            @staticmethod
            def broadcast(obj, src):
                assert obj is None and src == 0  # rank 1 did not measure
                return 5e11

    cb = Throughput()
    cb.setup(T(), None, "fit")
    assert calls == [] and cb.peak == 5e11


def test_measuring_the_peak_leaves_the_global_rng_alone():
    """How many matmul sizes are tried depends on timing; drawing them from the global RNG made two
    identical runs' dropout (and loss) differ."""
    torch.manual_seed(0)
    want = torch.rand(4)
    torch.manual_seed(0)
    measure_peak_flops(seconds=0.05, dtype=torch.float32, windows=1)
    assert torch.equal(torch.rand(4), want)

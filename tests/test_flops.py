"""The MFU yardstick: the peak of the dtype a run trains in."""

import pytest
import torch

from clap_train.callbacks import Throughput
from clap_train.flops import precision_dtype


@pytest.mark.parametrize("precision,dtype", [("bf16-mixed", torch.bfloat16), ("bf16-true", torch.bfloat16),
                                             ("16-mixed", torch.float16), ("32-true", torch.float32),
                                             ("64-true", torch.float64)])
def test_precision_dtype(precision, dtype):
    assert precision_dtype(precision) == dtype


def test_throughput_measures_the_peak_in_the_runs_dtype(monkeypatch):
    seen = []
    monkeypatch.setattr("clap_train.callbacks.measure_peak_flops",
                        lambda device, dtype: seen.append((device, dtype)) or 1e12)

    class T:
        precision = "bf16-mixed"

        class strategy:
            root_device = torch.device("cpu")

    cb = Throughput()
    cb.setup(T(), None, "fit")
    assert seen == [("cpu", torch.bfloat16)] and cb.peak == 1e12

import fractions
import os
import pickle

import pytest
import torch

from clap_train.checkpoints.io import AtomicCheckpointIO
from clap_train.checkpoints.load import UntrustedCheckpoint, read_checkpoint, strip_prefixes


def test_strip_prefixes():
    sd = {"module.model.a": 1, "_orig_mod.b": 2, "c": 3}
    assert strip_prefixes(sd) == {"a": 1, "b": 2, "c": 3}


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = ""


def test_pickle_payload_refused_and_never_run(tmp_path):
    global MARKER
    MARKER = str(tmp_path / "pwned")
    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as f:
        pickle.dump({"state_dict": {}, "x": Evil()}, f)
    with pytest.raises(UntrustedCheckpoint, match="full pickle.*os.system|full pickle.*posix.system|trust_checkpoint"):
        read_checkpoint(str(path))
    assert not os.path.exists(MARKER)


def test_numpy_scalars_load_without_opt_in_and_other_globals_need_it(tmp_path):
    import numpy as np

    torch.save({"epoch": np.int64(3), "best": np.float64(0.5), "dt": np.dtype("float32")}, tmp_path / "np.pt")
    ck = read_checkpoint(str(tmp_path / "np.pt"))
    assert ck["epoch"] == 3 and ck["best"] == 0.5
    torch.save({"x": fractions.Fraction(1, 3)}, tmp_path / "c.pt")
    with pytest.raises(UntrustedCheckpoint, match="fractions.Fraction"):
        read_checkpoint(str(tmp_path / "c.pt"))
    with pytest.warns(UserWarning, match="full pickle"):
        assert read_checkpoint(str(tmp_path / "c.pt"), trust=True)["x"] == fractions.Fraction(1, 3)


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_checkpoint(str(tmp_path / "nope.ckpt"))


def test_atomic_save_keeps_old_file_when_a_write_fails(tmp_path, monkeypatch):
    io = AtomicCheckpointIO()
    path = str(tmp_path / "last.ckpt")
    io.save_checkpoint({"a": torch.tensor(1)}, path)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        io.save_checkpoint({"a": torch.tensor(2)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["a"].item() == 1
    io.save_checkpoint({"a": torch.tensor(3)}, path)
    assert torch.load(path, weights_only=True)["a"].item() == 3
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]

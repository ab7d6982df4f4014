"""Non-finite steps are skipped and counted; too many in a row stop the run with a good checkpoint."""

import glob
import os

import pytest
import torch

from clap_train import lit as lit_mod
from tests.e2e.conftest import compose_cfg


def poison(monkeypatch, bad_calls):
    """Make the loss NaN on the given training_step calls (0-based), or on all of them."""
    orig = lit_mod.ClapLit._loss_and_backward
    calls = []

    def wrapped(self, batch):
        loss = orig(self, batch)
        calls.append(1)
        return loss * float("nan") if bad_calls == "all" or len(calls) - 1 in bad_calls else loss

    monkeypatch.setattr(lit_mod.ClapLit, "_loss_and_backward", wrapped)


def test_nonfinite_step_is_skipped_and_training_continues(tmp_path, data_root, monkeypatch):
    from clap_train.run import run

    poison(monkeypatch, {1})
    res = run(compose_cfg(tmp_path, ["test_after_fit=false"], data_root))
    assert res["global_step"] == 3  # 4 batches, one step skipped
    metrics = open(os.path.join(res["run_dir"], "csv", "metrics.csv")).read()
    assert "train/skipped_nonfinite" in metrics


def test_too_many_in_a_row_stop_with_last_good_checkpoint(tmp_path, data_root, monkeypatch):
    from clap_train.run import run

    poison(monkeypatch, "all")
    with pytest.raises(RuntimeError, match="non-finite.*nonfinite-stop.ckpt"):
        run(compose_cfg(tmp_path, ["test_after_fit=false", "optim.max_nonfinite=2", "name=nan"], data_root))
    (path,) = glob.glob(str(tmp_path / "runs" / "nan*" / "checkpoints" / "nonfinite-stop.ckpt"))
    ck = torch.load(path, weights_only=True)
    assert ck["global_step"] == 0 and all(
        torch.isfinite(v).all() for v in ck["state_dict"].values() if v.is_floating_point()
    )

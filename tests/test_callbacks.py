"""Training callbacks through the real conf/: time-based checkpoints."""

import os

import pytest

from tests.e2e.conftest import compose_cfg


def test_checkpoints_every_n_minutes_take_over_from_steps(tmp_path, data_root):
    from clap_train.run import run

    every_step = ["callbacks.last_checkpoint.every_n_minutes=1e-9", "callbacks.last_checkpoint.every_n_train_steps=100",
                  "callbacks.keep_last_checkpoints.keep_last=100", "trainer.max_steps=3", "test_after_fit=false"]
    out = run(compose_cfg(tmp_path, every_step, data_root))
    names = sorted(n for n in os.listdir(os.path.join(out["run_dir"], "checkpoints")) if n.startswith("step"))
    assert names == ["step0000001.ckpt", "step0000002.ckpt", "step0000003.ckpt"]  # time due at every step
    last = os.path.join(out["run_dir"], "checkpoints", "last.ckpt")  # a link: the bytes are written once
    assert os.path.islink(last) and os.readlink(last) == "step0000003.ckpt"


def test_bad_minutes_are_a_start_up_error(tmp_path):
    from clap_train.config import ConfigError
    from clap_train.run import run

    with pytest.raises(ConfigError, match=r"callbacks.last_checkpoint.every_n_minutes=0: must be minutes > 0, auto"):
        run(compose_cfg(tmp_path, ["callbacks.last_checkpoint.every_n_minutes=0"]))

"""Training callbacks through the real conf/: time-based checkpoints."""

import os

import pytest

from tests.e2e.conftest import compose_cfg


def test_checkpoints_every_n_minutes_take_over_from_steps(tmp_path, data_root):
    from clap_train.run import run

    every_step = [
        "callbacks.last_checkpoint.every_n_minutes=1e-9",
        "callbacks.last_checkpoint.every_n_train_steps=100",
        "callbacks.keep_last_checkpoints.keep_last=100",
        "trainer.max_steps=3",
        "test_after_fit=false",
    ]
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


def test_best_checkpoint_monitor_auto_follows_what_validation_logs():
    from lightning.pytorch.callbacks import ModelCheckpoint

    from clap_train.callbacks import resolve_monitor

    def best(monitor="auto"):
        return ModelCheckpoint(monitor=monitor, mode="max")

    cb = best()
    assert (
        resolve_monitor(cb, "best_checkpoint", {"esc50": True, "us8k": True}) and cb.monitor == "val/mean/zeroshot_top1"
    )
    cb = best()  # LAION's sources: captions, no classes
    assert (
        resolve_monitor(cb, "best_checkpoint", {"audiocaps": False, "esc50": True}) and cb.monitor == "val/mean/t2a_R@1"
    )
    assert not resolve_monitor(best(), "best_checkpoint", {})  # nothing validated: nothing to follow
    assert resolve_monitor(best("val/esc50/zeroshot_top1"), "best_checkpoint", {"audiocaps": False, "esc50": True})
    assert resolve_monitor(best("train/loss"), "best_checkpoint", {})


@pytest.mark.parametrize(
    "monitor, sources, why",
    [
        (
            "val/mean/zeroshot_top1",
            {"audiocaps": False, "clotho": False},
            "zero-shot metrics need zeroshot_classes on every source",
        ),
        ("val/audiocaps/zeroshot_top1", {"audiocaps": False}, "zero-shot metrics need zeroshot_classes on that source"),
        ("val/clotho/t2a_R@1", {"audiocaps": False}, "no validation source logs it"),
        ("val/mean/t2a_R@3", {"audiocaps": False}, "no validation source logs it"),
        ("val/mean/t2a_R@1", {}, "there are no validation sources"),
    ],
)
def test_a_monitor_no_validation_logs_is_a_start_up_error(monitor, sources, why):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from clap_train.callbacks import resolve_monitor
    from clap_train.config import ConfigError

    with pytest.raises(ConfigError) as e:
        resolve_monitor(ModelCheckpoint(monitor=monitor, mode="max"), "best_checkpoint", sources)
    msg = str(e.value)
    assert msg.startswith(f"callbacks.best_checkpoint.monitor={monitor!r}: {why}; valid choices: auto")
    if sources:
        assert "val/mean/t2a_R@1" in msg

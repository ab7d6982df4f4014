import os
import time

import torch

from clap_train.checkpoints.files import is_valid, newest_valid, prune, step_files


def save(path, step):
    torch.save({"state_dict": {"w": torch.ones(2) * step}, "global_step": step}, path)
    t = time.time() - 1000 + step  # mtimes in step order
    os.utime(path, (t, t))


def test_newest_valid_skips_corrupted_and_half_written(tmp_path):
    for s in (10, 20, 30):
        save(tmp_path / f"step{s:07d}.ckpt", s)
    save(tmp_path / "last.ckpt", 40)
    with open(tmp_path / "last.ckpt", "r+b") as f:  # corrupted
        f.seek(100)
        f.write(b"\x00" * 200)
    data = open(tmp_path / "step0000030.ckpt", "rb").read()
    open(tmp_path / "step0000030.ckpt", "wb").write(data[: len(data) // 2])  # half-written
    assert not is_valid(str(tmp_path / "last.ckpt")) and not is_valid(str(tmp_path / "step0000030.ckpt"))
    assert newest_valid(str(tmp_path)) == str(tmp_path / "step0000020.ckpt")


def test_prune_keeps_last_n_and_never_the_only_valid(tmp_path):
    for s in (1, 2, 3, 4, 5):
        save(tmp_path / f"step{s:07d}.ckpt", s)
    assert len(prune(str(tmp_path), 3)) == 2
    assert [os.path.basename(f) for f in step_files(str(tmp_path))] == [
        "step0000005.ckpt",
        "step0000004.ckpt",
        "step0000003.ckpt",
    ]
    open(tmp_path / "step0000005.ckpt", "wb").write(b"broken")
    prune(str(tmp_path), 1)  # the newest is broken: the newest valid one (4) survives
    left = [os.path.basename(f) for f in step_files(str(tmp_path))]
    assert left == ["step0000005.ckpt", "step0000004.ckpt"]
    assert newest_valid(str(tmp_path)).endswith("step0000004.ckpt")

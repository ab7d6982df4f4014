"""A disk that fills while a checkpoint is written ends the run with one clear line; the newest complete
checkpoint stays loadable (tried on a small tmpfs, as a full scratch disk would be)."""

import os
import shutil
import subprocess

import lightning as L
import pytest

from tests.e2e.conftest import train_py


class FillDiskAfterFirstCheckpoint(L.Callback):
    """After step 3 (a checkpoint was written at step 2) the disk keeps only `leave` bytes free."""

    def __init__(self, path: str, leave: int = 256 << 10):
        self.path, self.leave = path, leave

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == 3:
            free = shutil.disk_usage(self.path).free
            with open(os.path.join(self.path, "filler"), "wb") as f:
                f.truncate(0)
                f.write(b"\0" * max(0, free - self.leave))


@pytest.mark.slow
def test_full_disk_while_checkpointing_is_one_line_and_the_last_good_checkpoint_loads(tmp_path):
    from clap_train.checkpoints.files import newest_valid
    from clap_train.checkpoints.load import load_model

    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=120m", "tmpfs", str(small)], capture_output=True)
    assert mounted.returncode == 0, f"this test mounts a small tmpfs (needs root): {mounted.stderr}"
    try:
        p = train_py(
            tmp_path,
            [
                f"paths.run_dir={small}/run",
                "trainer.max_steps=6",
                "trainer.max_epochs=2",
                "+callbacks.fill._target_=tests.checkpoints.test_disk_full.FillDiskAfterFirstCheckpoint",
                f"+callbacks.fill.path={small}",
            ],
            ranks=1,
            check=False,
        )
        assert p.returncode == 2, p.stderr[-3000:]
        assert "Traceback" not in p.stderr, p.stderr[-3000:]
        last = p.stderr.strip().splitlines()[-1]
        assert last.startswith("error: no space left for checkpoint ") and "step0000004.ckpt" in last, last
        assert " MB are free on that disk" in last and "needs about" in last and "is untouched" in last, last
        ckpt_dir = small / "run" / "checkpoints"
        assert not [n for n in os.listdir(ckpt_dir) if ".tmp." in n]  # the partial file is gone
        good = newest_valid(str(ckpt_dir))
        assert good and good in last
        assert sum(q.numel() for q in load_model(good).parameters()) > 1000
    finally:
        subprocess.run(["umount", str(small)])

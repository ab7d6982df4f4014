"""A run prints each line once: Lightning's lines through one handler, without its product tips or the
`srun` hint (CI has srun on the PATH: the local SLURM cluster)."""

import logging

from clap_train.console import quiet_console
from tests.e2e.conftest import train_py


def test_lightning_lines_go_through_the_root_handler_only():
    lg = logging.getLogger("lightning.pytorch")
    lg.addHandler(logging.StreamHandler())  # what Lightning does at import when the root has no handler
    lg.propagate = False
    quiet_console()
    assert not [h for h in lg.handlers if type(h) is logging.StreamHandler] and lg.propagate


def test_a_run_prints_each_lightning_line_once(tmp_path):
    p = train_py(tmp_path, ["trainer.max_steps=1", "test_after_fit=false"], ranks=1)
    out = p.stdout + p.stderr
    assert out.count("Seed set to") == 1 and out.count("GPU available:") == 1, out[-3000:]
    assert "Tip:" not in out and "`srun` command is available" not in out

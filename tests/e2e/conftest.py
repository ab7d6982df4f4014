import contextlib
import io
import os
import runpy
import sys
import time

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from clap_train.testing import run_train_py
from tests.conftest import REPO

SMALL_DATA = [
    "synthetic.n_train={sentences:120,tags:60}",
    "synthetic.n_valid=24",
    "synthetic.n_test=24",
    "synthetic.shard_size=20",
]


def train_py(root, args=(), ranks: int = 2, timeout: int = 600, check: bool = True):
    """`python train.py debug=fast` with the small data set under `root`, as a user launches it: on `ranks`
    CPU processes (gloo) unless ranks=1. The process comes back with `.seconds` (wall time) set."""
    base = ["debug=fast", f"paths.root={root}", *SMALL_DATA, "callbacks.progress=null"]
    if ranks > 1:
        base += ["trainer.accelerator=cpu", f"trainer.devices={ranks}"]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "1",
        "DS_ACCELERATOR": "cpu",
    }
    t0 = time.time()
    p = run_train_py([*base, *args], root, env, timeout)
    p.seconds = time.time() - t0
    if check:
        assert p.returncode == 0, p.stderr[-4000:]
    return p


def train_py_in_process(args) -> tuple[int, str, str]:
    """`python train.py <args>` through train.py's own entry (Hydra's parser, our error handling) in this
    process, seconds instead of a process start: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, [os.path.join(REPO, "train.py"), *args]
    code = 0
    try:
        GlobalHydra.instance().clear()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_path(os.path.join(REPO, "train.py"), run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def compose_cfg(tmp_path, overrides=(), data_root=None):
    """The real conf/ with the fast debug preset, everything under tmp_path."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=os.path.join(REPO, "conf"), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=["debug=fast", f"paths.root={tmp_path}", *SMALL_DATA, *overrides],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        if data_root:
            cfg.synthetic.root = data_root
        del cfg.hydra
    return cfg


@pytest.fixture(scope="session")
def fast_run(tmp_path_factory, data_root):
    from clap_train.run import run

    tmp = tmp_path_factory.mktemp("fast_run")
    cfg = compose_cfg(tmp, ["callbacks.keep_last_checkpoints.keep_last=100", "trainer.max_epochs=2"], data_root)
    return cfg, run(cfg)


@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
    """`python train.py` exactly as a new user runs it (the one real learning run): (process, results)."""
    import json

    tmp = tmp_path_factory.mktemp("default_run")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    p = run_train_py([f"paths.root={tmp}"], tmp, env, timeout=1200)
    assert p.returncode == 0, p.stderr[-4000:]
    return p, json.load(open(tmp / "runs" / "default" / "results.json"))

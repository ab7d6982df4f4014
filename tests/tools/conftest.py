import pytest
import torch

from tests.data.messy import write_messy_folder


@pytest.fixture(scope="session")
def small_ckpt(tmp_path_factory):
    """A small random PANN + text model in our checkpoint format (16 kHz, 0.5 s clips)."""
    from clap_train.checkpoints.export import save_ours
    from clap_train.model import build_model
    from tests.test_model import CFG

    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("ckpt") / "small.ckpt")
    save_ours(build_model(CFG), path)
    return path


@pytest.fixture(scope="session")
def small_model(small_ckpt):
    from clap_train import load_model

    return load_model(small_ckpt)


@pytest.fixture(scope="session")
def messy_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("messy_tools")
    return str(root / "in"), write_messy_folder(str(root / "in"))

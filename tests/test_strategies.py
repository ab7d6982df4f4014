"""Every trainer/ preset's strategy object, built from the real conf/ (that each one trains on 2 ranks like
one process is tests/e2e/test_presets_train.py), and the FSDP2 units."""

import os

import pytest
from hydra.utils import instantiate

from tests.e2e.conftest import compose_cfg

PRESETS = sorted(f[:-5] for f in os.listdir(os.path.join(os.path.dirname(__file__), "..", "conf", "trainer")))


def test_every_preset_is_covered():
    assert PRESETS == ["cpu", "ddp", "deepspeed_stage_2", "deepspeed_stage_3", "fsdp", "gpu"]


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_builds_its_strategy(tmp_path, preset):
    from clap_train.strategies import FSDP2

    t = compose_cfg(tmp_path, [f"trainer={preset}"]).trainer
    assert t.use_distributed_sampler is False and t.num_sanity_val_steps == 0  # inherited from cpu
    strategy = t.get("strategy")
    if preset in ("cpu", "gpu"):
        assert strategy is None and t.devices == 1
    elif preset == "ddp":
        assert strategy == "ddp" and t.precision == "bf16-mixed"
    elif preset == "fsdp":
        s = instantiate(strategy)
        assert isinstance(s, FSDP2) and t.accelerator == "gpu" and t.precision == "bf16-mixed"
        assert s.reshard_after_forward and not s._save_distributed_checkpoint  # full checkpoints
    else:
        stage = int(preset[-1])
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            with pytest.raises(Exception, match=r"needs DeepSpeed.*pip install -e '\.\[deepspeed\]'"):
                instantiate(strategy)
            return
        s = instantiate(strategy)
        assert s.config["zero_optimization"]["stage"] == stage


def test_wrap_policy_takes_every_tower_block(tmp_path):
    from clap_train.model import build_model
    from clap_train.strategies import wrap_units

    cfg = compose_cfg(tmp_path, ["audio_encoder=htsat_mini"])
    from omegaconf import OmegaConf

    m = build_model(OmegaConf.to_container(cfg.model, resolve=True))
    units = {id(u) for u in wrap_units(m)}
    blocks = [n for n, mod in m.named_modules() if id(mod) in units]
    assert sum(n.startswith("audio_branch.layers.") for n in blocks) == 6  # htsat_mini: 2+2+2 Swin blocks
    assert (
        sum(n.startswith("text_branch.model.encoder.layer.") for n in blocks)
        == m.text_branch.model.config.num_hidden_layers
    )

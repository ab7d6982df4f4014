import dataclasses

import pytest

from clap_train.config import ConfigError, build, defaults_of
from clap_train.optim import OptimConfig
from clap_train.schema import BLOCKS, validate
from tests.e2e.conftest import compose_cfg


def test_composed_defaults_are_the_dataclasses(tmp_path):
    """conf/ holds no copy of a typed block's defaults: what composes is what the dataclass says."""
    cfg = compose_cfg(tmp_path, [])
    got = validate(cfg)
    for name, cls in {**BLOCKS, "optim": OptimConfig}.items():
        assert dataclasses.asdict(getattr(got, name)) == dataclasses.asdict(build(cls, defaults_of(cls), name))
    # debug=fast changes nothing typed; an override lands in the typed block
    assert validate(compose_cfg(tmp_path, ["optim.lr=3e-4", "compile.enabled=true"])).optim.lr == 3e-4


def test_build_names_unknown_keys_and_checks_ranges():
    with pytest.raises(ConfigError, match=r"^optim: unknown key\(s\) \['lrr'\]; valid keys: lr, weight_decay"):
        build(OptimConfig, {"lrr": 1}, "optim")
    with pytest.raises(ConfigError, match=r"^optim.warmup_steps=-1: must be a whole number >= 0$"):
        build(OptimConfig, {"warmup_steps": -1}, "optim")
    with pytest.raises(ConfigError, match=r"^optim.betas=\[0.9\]: must be two numbers"):
        build(OptimConfig, {"betas": [0.9]}, "optim")
    assert build(OptimConfig, None, "optim") == OptimConfig()

"""The typed configuration: every block without a `_target_` of its own is a dataclass (keys, defaults,
types, ranges in one place), registered in Hydra's ConfigStore so that conf/ files hold only what differs,
and checked at start-up by `validate` before any data is read or model built.

Blocks with a `_target_` (data, audio_encoder, text_encoder, pooling, trainer, logger, callbacks) are
checked by the class they build, at construction, with the same one-line ConfigError.

Why defaults are stored as plain nodes and checked here, not as OmegaConf-typed nodes: OmegaConf refuses
unions (`fused: auto | true | false`), knows no ranges, and reports a type error from Hydra's command-line
parser as a multi-line message with exit status 1; here every mistake is one line with exit status 2.
"""

from __future__ import annotations

import dataclasses

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig

from clap_train.compile import CompileConfig
from clap_train.config import ConfigError, build, check_choice, check_number, defaults_of, register_resolvers
from clap_train.distributed import DistributedConfig
from clap_train.eval.metrics import EvalConfig
from clap_train.loss import LossConfig
from clap_train.optim import OptimConfig

# top-level block -> its dataclass (the `optim` group's schema is OptimConfig, stored in the group)
BLOCKS = {"loss": LossConfig, "eval": EvalConfig, "compile": CompileConfig, "distributed": DistributedConfig}
RESUME = ("auto", "never")


def register() -> None:
    """Resolvers and schemas: called by train.py and by tests that compose conf/ themselves."""
    register_resolvers()
    cs = ConfigStore.instance()
    cs.store(group="optim", name="schema", node=defaults_of(OptimConfig))
    cs.store(name="schema", node={k: defaults_of(c) for k, c in BLOCKS.items()})


@dataclasses.dataclass
class Checked:
    """The typed blocks of a run, checked."""

    optim: OptimConfig
    loss: LossConfig
    eval: EvalConfig
    compile: CompileConfig
    distributed: DistributedConfig


def validate(cfg: DictConfig) -> Checked:
    check_number("seed", cfg.get("seed"), int)
    check_choice("resume", cfg.get("resume", "auto"), RESUME)
    missing = [k for k in (cfg.get("require") or []) if _select(cfg, k) in (None, "")]
    if missing:
        raise ConfigError(f"this configuration needs {', '.join(missing)} set (e.g. {missing[0]}=...)")
    blocks = {k: build(c, cfg.get(k), k) for k, c in BLOCKS.items()}
    return Checked(optim=build(OptimConfig, cfg.get("optim"), "optim"), **blocks)


def _select(cfg, key: str):
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, key)

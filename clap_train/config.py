"""OmegaConf resolvers used by conf/ (registered by train.py and by tests composing the config), and the
error every configuration mistake raises."""

from __future__ import annotations

import hashlib

from omegaconf import OmegaConf


class ConfigError(ValueError):
    """A configuration mistake, reported at start-up (one line, no traceback) with the key at fault."""


def _suffix(overrides: str) -> str:
    """'' for no overrides, else '-<8 hex>' of them: deterministic, short, safe as a folder name."""
    return "" if not overrides else "-" + hashlib.sha1(overrides.encode()).hexdigest()[:8]


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("clap.suffix"):
        OmegaConf.register_new_resolver("clap.suffix", _suffix)
